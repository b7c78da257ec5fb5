//! What the console shows when something cannot be done: a Vietnamese page saying what went
//! wrong and what to do, with the hub's own message as technical detail (never a panic or a
//! bare status line).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::html;

use super::layout;
use crate::http::ApiError;
use crate::hub::HubError;
use crate::query::QueryError;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error(transparent)]
    Hub(#[from] HubError),
    /// An error answer of the API code the console reuses (reports).
    #[error("{}", .0.message)]
    Api(ApiError),
    #[error("the form's security token is missing or wrong, or it came from another site")]
    Csrf,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Internal(String),
    #[error("too many requests; wait {0} s")]
    RateLimited(u64),
}

impl From<ApiError> for ConsoleError {
    fn from(e: ApiError) -> Self {
        ConsoleError::Api(e)
    }
}

impl From<super::session::SessionError> for ConsoleError {
    fn from(e: super::session::SessionError) -> Self {
        ConsoleError::Internal(e.to_string())
    }
}

/// The Vietnamese explanation of a query error (also shown inline on the SQL page).
pub fn query_message(e: &QueryError) -> &'static str {
    match e {
        QueryError::NotAllowed(_) => {
            "Chỉ được phép truy vấn đọc dữ liệu (SELECT); câu lệnh này thay đổi dữ liệu hoặc cấu trúc."
        }
        QueryError::Invalid(_) => {
            "Câu lệnh SQL chưa đúng hoặc dùng bảng, cột mà tài khoản này không được xem."
        }
        QueryError::Execution(_) => "Truy vấn bị lỗi khi chạy.",
        QueryError::Share(_) => "Dữ liệu chia sẻ theo yêu cầu này hiện không dùng được.",
        QueryError::Timeout(_) => "Truy vấn chạy quá thời gian cho phép; hãy thu hẹp điều kiện.",
        QueryError::TooMuchMemory(..) => {
            "Truy vấn cần quá nhiều bộ nhớ; hãy lọc bớt dữ liệu hoặc thêm LIMIT."
        }
        QueryError::Internal(_) => "Máy chủ gặp lỗi khi chạy truy vấn.",
    }
}

impl ConsoleError {
    /// Status, Vietnamese message, and the technical detail (if any).
    fn explain(&self) -> (StatusCode, String, Option<String>) {
        let detail = Some(self.to_string());
        match self {
            ConsoleError::Csrf => (
                StatusCode::FORBIDDEN,
                "Biểu mẫu đã hết hiệu lực hoặc không được gửi từ bảng điều khiển này. Vui lòng tải lại trang và thử lại.".into(),
                None,
            ),
            ConsoleError::Forbidden(m) => (
                StatusCode::FORBIDDEN,
                "Tài khoản của bạn không có quyền thực hiện việc này.".into(),
                Some(m.clone()),
            ),
            ConsoleError::BadRequest(m) => (StatusCode::BAD_REQUEST, m.clone(), None),
            ConsoleError::Internal(_) => self.server_fault(),
            ConsoleError::RateLimited(s) => (
                StatusCode::TOO_MANY_REQUESTS,
                format!("Bạn đã gửi quá nhiều yêu cầu; vui lòng thử lại sau {s} giây."),
                None,
            ),
            ConsoleError::Api(e) => {
                let message = match e.status {
                    StatusCode::FORBIDDEN => "Tài khoản của bạn không có quyền xem nội dung này.",
                    StatusCode::NOT_FOUND => "Không tìm thấy nội dung yêu cầu.",
                    StatusCode::BAD_REQUEST => "Yêu cầu chưa đúng; vui lòng kiểm tra lại.",
                    _ => "Không thực hiện được yêu cầu.",
                };
                (e.status, message.into(), Some(e.message.clone()))
            }
            ConsoleError::Hub(e) => match e {
                HubError::Forbidden(m) => (
                    StatusCode::FORBIDDEN,
                    "Tài khoản của bạn không có quyền thực hiện việc này.".into(),
                    Some(m.clone()),
                ),
                HubError::NotFound(m) | HubError::UnknownPipeline(m) => (
                    StatusCode::NOT_FOUND,
                    "Không tìm thấy nội dung yêu cầu, hoặc tài khoản của bạn không được xem nội dung đó.".into(),
                    Some(m.clone()),
                ),
                HubError::BadRequest { message, .. } => (
                    StatusCode::BAD_REQUEST,
                    "Thông tin nhập chưa đúng; vui lòng kiểm tra lại.".into(),
                    Some(message.clone()),
                ),
                HubError::Conflict(m) => (
                    StatusCode::CONFLICT,
                    "Không thực hiện được vì trạng thái đã thay đổi (có thể người khác vừa xử lý). Vui lòng tải lại trang.".into(),
                    Some(m.clone()),
                ),
                HubError::Query(q) => (StatusCode::BAD_REQUEST, query_message(q).into(), detail),
                HubError::AlreadyRunning(_) => (
                    StatusCode::CONFLICT,
                    "Kết nối này đang chạy; vui lòng đợi lượt chạy kết thúc.".into(),
                    detail,
                ),
                HubError::ShuttingDown => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Hệ thống đang dừng để bảo trì; vui lòng thử lại sau ít phút.".into(),
                    None,
                ),
                _ => self.server_fault(),
            },
        }
    }

    /// A fault of the server (storage, state store, a bug): its text may name files and
    /// internals, so it goes to the log under a reference the page shows, not to the page.
    fn server_fault(&self) -> (StatusCode, String, Option<String>) {
        let reference = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
        tracing::error!(reference = %reference, error = %self, "console request failed");
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Máy chủ gặp lỗi; vui lòng thử lại sau hoặc báo cho quản trị viên.".into(),
            Some(format!("mã tham chiếu trong nhật ký máy chủ: {reference}")),
        )
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let (status, message, detail) = self.explain();
        if status.is_server_error() {
            tracing::error!(error = %self, "console request failed");
        }
        let title = match status {
            StatusCode::FORBIDDEN => "Không có quyền truy cập",
            StatusCode::NOT_FOUND => "Không tìm thấy",
            StatusCode::TOO_MANY_REQUESTS => "Quá nhiều yêu cầu",
            s if s.is_server_error() => "Lỗi máy chủ",
            _ => "Không thực hiện được",
        };
        let body = layout::bare(
            title,
            html! {
                div.notice.error role="alert" {
                    p { (message) }
                    @if let Some(d) = &detail {
                        p.detail { "Chi tiết kỹ thuật: " (d) }
                    }
                }
                p { a href="/" { "Về trang Tổng quan" } }
            },
        );
        let mut response = (status, body).into_response();
        if let ConsoleError::RateLimited(s) = self
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn page_of(error: ConsoleError) -> (StatusCode, String) {
        let response = error.into_response();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("a page");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn a_server_fault_shows_a_reference_not_its_internals() {
        let (status, page) = page_of(ConsoleError::Internal(
            "cannot open /var/lib/iochub/state.sqlite".into(),
        ))
        .await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!page.contains("state.sqlite"), "{page}");
        assert!(
            page.contains("mã tham chiếu trong nhật ký máy chủ"),
            "{page}"
        );
        // A mistake of the user's keeps its explanation.
        let (status, page) = page_of(ConsoleError::BadRequest("Vui lòng nhập «SQL».".into())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(page.contains("Vui lòng nhập «SQL»."));
    }
}
