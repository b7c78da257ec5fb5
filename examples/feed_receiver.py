"""A receiver of the iochub feed, as the provincial IOC would run it.

    pip install standardwebhooks
    FEED_SECRET=whsec_... python3 examples/feed_receiver.py 127.0.0.1 9000

Each POST is a batch: a JSON array of CloudEvents (application/cloudevents-batch+json),
signed per Standard Webhooks. The receiver verifies the signature, skips events it has
already applied (delivery is at least once: a batch can come again, with the same
webhook-id), applies the rest in order, and answers 2xx only after they are stored, because
a 2xx is what moves the hub on.
"""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

WEBHOOK = Webhook(os.environ["FEED_SECRET"])
# The last applied sequence per dataset; a real receiver keeps this in its database, in the
# same transaction as the records.
APPLIED: dict[str, int] = {}


class FeedHandler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        try:
            WEBHOOK.verify(body, dict(self.headers.items()))
        except WebhookVerificationError as error:
            self.send_error(401, f"bad signature: {error}")
            return
        for event in json.loads(body):
            dataset, sequence = event["id"].rsplit(":", 1)
            if int(sequence) <= APPLIED.get(dataset, 0):
                continue  # a repeat of something already applied
            # Apply here: upsert event["data"] by event["subject"], or delete it when
            # event["type"] == "vn.ioc.record.deleted".
            APPLIED[dataset] = int(sequence)
            print(event["type"], dataset, sequence, event.get("subject"), flush=True)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    host, port = sys.argv[1], int(sys.argv[2])
    ThreadingHTTPServer((host, port), FeedHandler).serve_forever()
