"""The figures tests/it/reports.rs expects, computed from samples/ with plain Python.

Independent of the hub's code: the sample files are read directly, keyed records keep their
last version, and the quarantined rows are left out, either by re-applying the rules the
samples README describes (dossiers) or by the row numbers tests/it/samples.rs lists
(health aggregates, schools). Run: python3 tests/it/reports_expected.py
"""
import csv, json, re
from collections import Counter, defaultdict
from datetime import datetime, timezone, timedelta
tz = timezone(timedelta(hours=7))
import os
S = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "samples") + "/"
recs = {}
for line in open(S+"feedback.jsonl", encoding="utf-8"):
    r = json.loads(line); recs[r["service_request_id"]] = r   # key upsert: last wins
print("citizen stored", len(recs))
def ts(s):
    try:
        d = datetime.fromisoformat(s)
    except ValueError:
        return None
    if d.tzinfo is None: d = d.replace(tzinfo=timezone.utc)
    return d
start, end = datetime(2025,4,1,tzinfo=tz), datetime(2025,5,1,tzinfo=tz)
apr = [r for r in recs.values() if (t:=ts(r["requested_datetime"])) and start <= t < end]
print("april total", len(apr))
bycat = Counter((r["service_code"], r["service_name"]) for r in apr)
for k,v in sorted(bycat.items(), key=lambda kv:(-kv[1], kv[0])): print("  ", k, v)
bystatus = Counter((r["status"], r["x_status_detail"]) for r in apr)
print("status", sorted(bystatus.items()))
print("status only", Counter(r["status"] for r in apr))
agencies = ['DP-VP','DP-TNMT','DP-TP','DP-KTHT','DP-LDTBXH','DP-VPDKDD']+['DP-X'+c for c in ['25363','25366','25369','25372','25375','25378','25381','25384','25387','25390','25393']]
num = ["carried_over","received_online","received_direct","resolved_early","resolved_on_time","resolved_late","pending_within_deadline","pending_overdue","returned_or_withdrawn"]
good = {}
for i, r in enumerate(csv.DictReader(open(S+"dossiers.csv", encoding="utf-8")), start=2):
    try:
        n = {k:int(r[k]) for k in num}; rate = float(r["satisfaction_rate"])
    except ValueError:
        print("bad row", i, "numbers"); continue
    ok = re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", r["period"]) and r["agency_code"] in agencies and all(v>=0 for v in n.values()) and 0<=rate<=1
    bal = n["carried_over"]+n["received_online"]+n["received_direct"] == sum(n[k] for k in num[3:])
    if not (ok and bal): print("bad row", i); continue
    good[(r["period"], r["agency_code"])] = (r, n)
print("dossier stored", len(good))
agg = defaultdict(lambda: Counter())
names = {}
for (p, a), (r, n) in good.items():
    if "2025-01" <= p <= "2025-03":
        agg[a].update(n); names[a] = r["agency_name"]
print("Q1 by agency: received, resolved, ontime_rate, late")
tot = Counter()
for a in sorted(agg, key=lambda a: -(agg[a]["received_online"]+agg[a]["received_direct"])):
    n = agg[a]; tot.update(n)
    rec = n["received_online"]+n["received_direct"]; res = n["resolved_early"]+n["resolved_on_time"]+n["resolved_late"]
    print(f"  {a} {names[a]}: {rec} {res} {(n['resolved_early']+n['resolved_on_time'])/res*100:.1f} {n['resolved_late']}")
rec = tot["received_online"]+tot["received_direct"]; res = tot["resolved_early"]+tot["resolved_on_time"]+tot["resolved_late"]
print("  total", rec, res, f"{(tot['resolved_early']+tot['resolved_on_time'])/res*100:.2f}", tot["resolved_late"])
# health: a first look by the README's rules (the unknown-facility row is excluded below)
hz = []
for i, r in enumerate(csv.DictReader(open(S+"health_aggregates.csv", encoding="utf-8")), start=2):
    try: c = int(r["count"])
    except ValueError: print("health bad", i); continue
    if c < 0 or not re.fullmatch(r"\d{4}-\d{2}", r["period"]): print("health bad", i); continue
    hz.append((r, c))
print("health rows", len(hz))
h = Counter()
for r, c in hz:
    h[(r["period"], r["measure_code"], r["measure_name"])] += c
for k in sorted(h): print("  ", k, h[k])
print("--- by data-row exclusions (as tests/it/samples.rs lists the quarantined rows)")
rows = list(csv.DictReader(open(S+"health_aggregates.csv", encoding="utf-8")))
h = Counter(); fac = defaultdict(set)
for i, r in enumerate(rows, start=1):
    if 28 <= i <= 31: continue
    if "2025-01" <= r["period"] <= "2025-03":
        h[(r["measure_code"], r["measure_name"])] += int(r["count"]); fac[r["measure_code"]].add(r["facility_id"])
print("health Q1", {k: (v, len(fac[k[0]])) for k, v in sorted(h.items())})
rows = list(csv.DictReader(open(S+"schools.csv", encoding="utf-8")))
schools = {}
for i, r in enumerate(rows, start=1):
    if i in (23, 24, 25, 27, 28): continue
    schools[r["school_id"]] = r
lv = defaultdict(lambda: [0,0,0,0])
for r in schools.values():
    x = lv[r["level"]]; x[0]+=1; x[1]+=int(r["classes"]); x[2]+=int(r["students_total"]); x[3]+=int(r["teachers"])
print("schools", len(schools), dict(lv))
cc = defaultdict(lambda: [0,0,0])
for r in apr:
    x = cc[r["service_code"]]; x[0]+=1; x[1 if r["status"]=="closed" else 2]+=1
print("april by category (received, closed, open)", dict(cc))
print("Q1 numerators:")
for a in sorted(agg):
    n = agg[a]
    print(f'  ("{a}", {n["received_online"]+n["received_direct"]}, {n["received_online"]}, {n["resolved_early"]+n["resolved_on_time"]+n["resolved_late"]}, {n["resolved_early"]+n["resolved_on_time"]}, {n["resolved_late"]}),')
print("online total", tot["received_online"], "ontime total", tot["resolved_early"]+tot["resolved_on_time"])


# April 2025 citizen reports by handling unit (tests/it/reports.rs): the units by hand from
# the GeoJSON rectangles (the table in tests/it/citizen_reports.rs), deadlines by the calendar.
def april_by_unit():
    import json, datetime, tomllib
    cal = tomllib.load(open('samples/holidays_vn.toml','rb'))
    off=set(); make=set()
    for h in cal.get('holiday',[]):
        if h.get('status')=='pending': continue
        d=datetime.date.fromisoformat(h['start']); e=datetime.date.fromisoformat(h['end'])
        while d<=e: off.add(d); d+=datetime.timedelta(days=1)
    for m in cal.get('makeup_workday',[]): make.add(datetime.date.fromisoformat(m['date']))
    def working(d): return d in make or (d.weekday()<5 and d not in off)
    def due(d):
        n=0
        while n<3:
            d+=datetime.timedelta(days=1)
            if working(d): n+=1
        return d
    UNIT={}
    for u,ls in [("25363",[1,12,23,34,45]),("25366",[2,13,24,35,46,50]),("25369",[3,14,25,36,47,51]),("25372",[4,15,26,37,48]),("25375",[5,16,27,38]),("25378",[6,17,28,39,54,63]),("25381",[7,18,29,40,55,62]),("25384",[8,19,30,41,49,61]),("25387",[9,20,31,42,56]),("25390",[10,21,32,43,57]),("25393",[11,22,33,44,58]),("VP_HDND_UBND",[52,53,59,60])]:
        for l in ls: UNIT[l]=u
    tz=datetime.timezone(datetime.timedelta(hours=7))
    def parse(s):
        try:
            t=datetime.datetime.fromisoformat(s)
        except ValueError:
            t=datetime.datetime.strptime(s,'%d/%m/%Y %H:%M')
        if t.tzinfo is None: t=t.replace(tzinfo=tz)
        return t.astimezone(tz)
    last={}
    for i,l in enumerate(open('samples/feedback.jsonl'),1):
        r=json.loads(l); last[r['service_request_id']]=(i,r)
    agg={}
    for i,r in last.values():
        t=parse(r['requested_datetime'])
        if not (t.year==2025 and t.month==4): continue
        u=UNIT[i]; d=due(t.date())
        answered = r['status']=='closed' or r['x_status_detail']=='da_xu_ly'
        if answered:
            a=parse(r['updated_datetime']).date()
            s='answered_on_time' if a<=d else 'answered_late'
        else: s='open_overdue'
        a=agg.setdefault(u,{'received':0,'answered_on_time':0,'answered_late':0,'open_overdue':0})
        a['received']+=1; a[s]+=1
    for u in sorted(agg): print(u, agg[u], round(agg[u]['answered_on_time']/agg[u]['received'],4))
    print(sum(a['received'] for a in agg.values()))


april_by_unit()
