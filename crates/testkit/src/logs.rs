//! Logs of a failing test.

/// Installs a log subscriber writing to the test's output when `RUST_LOG` is set, for
/// debugging a failing test; does nothing otherwise, or when one is installed already.
pub fn init_logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}
