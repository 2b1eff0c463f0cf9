//! Commands run after a delivery or a failure, for NAS automation (notify someone, index the
//! result, sync it elsewhere). The command is an argv list run without a shell (write
//! `["sh", "-c", "..."]` to ask for one), with what happened in environment variables, a
//! timeout, and its output logged. A hook that fails or hangs is logged and never touches the
//! job: the result is already in place when it runs. Hooks run at most once per job (a crash
//! right after a job finishes skips its hook).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tracing::{info, warn};

/// What a hook is told about the job.
#[derive(Debug, Clone)]
pub struct HookContext {
    /// `delivered` or `failed`.
    pub event: &'static str,
    pub job: i64,
    /// Where the source was in the inbox.
    pub source: PathBuf,
    /// Where the source is now (done/ or failed/), if it was moved.
    pub source_now: Option<PathBuf>,
    /// The delivered outputs (a folder for a zip result, else a file).
    pub outputs: Vec<PathBuf>,
    /// Why it failed.
    pub reason: Option<String>,
    /// Why no finished photo was made (the layers were delivered).
    pub render_error: Option<String>,
}

/// Runs `argv` with the job's details in `RETOUCHD_*` variables, killing it after `timeout`.
/// Returns whether it exited successfully.
pub async fn run(argv: &[String], timeout: Duration, ctx: &HookContext) -> bool {
    let Some((program, args)) = argv.split_first() else { return true };
    let outputs: Vec<String> = ctx.outputs.iter().map(|p| p.display().to_string()).collect();
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env("RETOUCHD_EVENT", ctx.event)
        .env("RETOUCHD_JOB", ctx.job.to_string())
        .env("RETOUCHD_SOURCE", &ctx.source)
        .env("RETOUCHD_SOURCE_NOW", ctx.source_now.as_deref().unwrap_or(ctx.source.as_path()))
        .env("RETOUCHD_OUTPUTS", outputs.join("\n"))
        .env("RETOUCHD_OUTPUT", outputs.first().map(String::as_str).unwrap_or(""))
        .env("RETOUCHD_REASON", ctx.reason.as_deref().unwrap_or(""))
        .env("RETOUCHD_RENDER_ERROR", ctx.render_error.as_deref().unwrap_or(""))
        .env_remove("RETOUCHD_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            warn!(job = ctx.job, hook = %program, error = %e, "the hook cannot be started; check the command in the config");
            return false;
        }
    };
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_) => {
            warn!(job = ctx.job, hook = %program, timeout = %humantime::format_duration(timeout), "the hook ran too long and was stopped");
            false
        }
        Ok(Err(e)) => {
            warn!(job = ctx.job, hook = %program, error = %e, "the hook failed to run");
            false
        }
        Ok(Ok(output)) => {
            let stdout = String::from_utf8_lossy(&output.stdout);
            let stderr = String::from_utf8_lossy(&output.stderr);
            if output.status.success() {
                info!(job = ctx.job, hook = %program, stdout = %stdout.trim(), stderr = %stderr.trim(), "hook ran");
            } else {
                warn!(job = ctx.job, hook = %program, status = %output.status, stdout = %stdout.trim(), stderr = %stderr.trim(), "the hook failed; the job is not affected");
            }
            output.status.success()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> HookContext {
        HookContext {
            event: "delivered",
            job: 7,
            source: "/in/a b.jpg".into(),
            source_now: Some("/done/a b.jpg".into()),
            outputs: vec!["/out/a b".into()],
            reason: None,
            render_error: Some("a CMYK JPEG".into()),
        }
    }

    #[tokio::test]
    async fn hooks_get_the_job_in_environment_variables_without_a_shell() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("env.txt");
        let argv: Vec<String> = vec![
            "sh".into(),
            "-c".into(),
            format!(
                "echo \"$RETOUCHD_EVENT|$RETOUCHD_JOB|$RETOUCHD_SOURCE|$RETOUCHD_OUTPUT|$RETOUCHD_RENDER_ERROR\" > '{}'",
                out.display()
            ),
        ];
        assert!(run(&argv, Duration::from_secs(5), &ctx()).await);
        assert_eq!(std::fs::read_to_string(out).unwrap(), "delivered|7|/in/a b.jpg|/out/a b|a CMYK JPEG\n");
        // Arguments are passed as they are, not through a shell.
        assert!(run(&["test".into(), "a b".into(), "=".into(), "a b".into()], Duration::from_secs(5), &ctx()).await);
    }

    #[tokio::test]
    async fn failing_missing_and_hanging_hooks_are_reported_not_fatal() {
        assert!(!run(&["false".into()], Duration::from_secs(5), &ctx()).await);
        assert!(!run(&["/nonexistent/hook".into()], Duration::from_secs(5), &ctx()).await);
        let started = std::time::Instant::now();
        assert!(!run(&["sleep".into(), "30".into()], Duration::from_millis(200), &ctx()).await);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
