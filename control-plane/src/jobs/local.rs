//! The local executor: `edgewise-train` as a child process, its output streamed into
//! the job's log line by line, killed when the job is cancelled.

use std::path::Path;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

/// Runs `program args`, calling `log` with every output line; `Err` names why it failed.
pub async fn run(
    program: &Path,
    args: &[String],
    log: impl Fn(String) + Send + Sync + Clone + 'static,
    cancel: CancellationToken,
) -> Result<(), String> {
    let mut child = Command::new(program)
        .args(args)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    let mut readers = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        readers.push(tokio::spawn(forward(BufReader::new(stdout), log.clone())));
    }
    if let Some(stderr) = child.stderr.take() {
        readers.push(tokio::spawn(forward(BufReader::new(stderr), log.clone())));
    }
    let status = tokio::select! {
        status = child.wait() => status.map_err(|e| format!("the trainer vanished: {e}"))?,
        () = cancel.cancelled() => {
            let _ = child.kill().await;
            return Err("cancelled".to_owned());
        }
    };
    for reader in readers {
        let _ = reader.await;
    }
    if status.success() {
        Ok(())
    } else {
        Err(format!("the trainer exited with {status}"))
    }
}

async fn forward<R: tokio::io::AsyncRead + Unpin>(reader: BufReader<R>, log: impl Fn(String)) {
    let mut lines = reader.lines();
    while let Ok(Some(line)) = lines.next_line().await {
        log(line);
    }
}
