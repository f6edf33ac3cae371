//! One-line report of an error and its causes for the command-line tools.

/// Returns `error` and each of its causes joined by `": "`, leaving out a
/// cause whose text the report already holds. Library errors often print
/// their source inside their own message, so anyhow's `{:#}` would print
/// that source twice.
pub fn error_report(error: &anyhow::Error) -> String {
    let mut report = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if report.contains(&text) {
            continue;
        }
        if !report.is_empty() {
            report.push_str(": ");
        }
        report.push_str(&text);
    }
    report
}

#[cfg(test)]
mod tests {
    use super::error_report;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot create the folder: {source}; choose another")]
    struct Outer {
        source: std::io::Error,
    }

    fn io_error() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::AlreadyExists, "File exists")
    }

    #[test]
    fn a_cause_printed_in_its_parent_appears_once() {
        let error = anyhow::Error::new(Outer { source: io_error() }).context("cannot run");

        assert_eq!(
            error_report(&error),
            "cannot run: cannot create the folder: File exists; choose another"
        );
    }

    #[test]
    fn causes_not_in_their_parent_are_joined_in_order() {
        let error = anyhow::Error::new(io_error())
            .context("reading config.json")
            .context("cannot load model m");

        assert_eq!(
            error_report(&error),
            "cannot load model m: reading config.json: File exists"
        );
    }
}
