//! A fault-injection hook for crash tests: with `IOCHUB_FAULT=after-data-commit:<pipeline>`
//! the process aborts right after that pipeline's data commit and before its state is saved,
//! the worst moment for losing or repeating records. Never set in production.

pub fn crash_point(point: &str, pipeline: &str) {
    if let Ok(fault) = std::env::var("IOCHUB_FAULT")
        && fault == format!("{point}:{pipeline}")
    {
        eprintln!("IOCHUB_FAULT: aborting at {point} of {pipeline}");
        std::process::abort();
    }
}
