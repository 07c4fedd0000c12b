//! Writes a named section of BENCHMARKS.md, leaving the other sections as they are.

use anyhow::{Context, Result};

use e2e::harness::util::workspace_root;

use crate::backup::servers::Kind;

/// The "runs" cell (`4 (+1 failed)`) and the "every run, in order" cell (`1.23, failed, …`)
/// of a table row; each run is its time in seconds, `None` when it failed.
pub fn runs_cells(runs: &[Option<f64>]) -> (String, String) {
    let failed = runs.iter().filter(|r| r.is_none()).count();
    let ok = runs.len() - failed;
    let every = runs
        .iter()
        .map(|r| r.map_or_else(|| "failed".to_owned(), |t| format!("{t:.2}")))
        .collect::<Vec<_>>()
        .join(", ");
    let cell = if failed > 0 {
        format!("{ok} (+{failed} failed)")
    } else {
        ok.to_string()
    };
    (cell, every)
}

/// What [`per_engine`] measured: each engine's runs (`None`: failed) and the failures' notes.
pub type PerEngine<R> = (Vec<(Kind, Vec<Option<R>>)>, Vec<String>);

/// Runs `one` `runs` times per engine, each caught on its own: a failed or panicking run
/// is a note, never an abort of the others. `what` names a run in the progress lines.
pub fn per_engine<R>(
    runs: usize,
    engines: &[Kind],
    what: &str,
    one: impl Fn(Kind) -> Result<R>,
) -> PerEngine<R> {
    let began = std::time::Instant::now();
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for &kind in engines {
        let mut got = Vec::new();
        for i in 1..=runs {
            eprintln!(
                "[{:>5.0}s] {} {what} {i}/{runs}",
                began.elapsed().as_secs_f64(),
                kind.as_str()
            );
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| one(kind))) {
                Ok(Ok(r)) => got.push(Some(r)),
                Ok(Err(e)) => {
                    notes.push(format!("{} run {i}: {e:#}", kind.as_str()));
                    got.push(None);
                }
                Err(_) => {
                    notes.push(format!(
                        "{} run {i}: panicked (see the output)",
                        kind.as_str()
                    ));
                    got.push(None);
                }
            }
        }
        rows.push((kind, got));
    }
    (rows, notes)
}

/// Replace the text between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->` with `body`
/// (appending the section when it is not there yet).
pub fn write_section(name: &str, body: &str) -> Result<()> {
    let path = workspace_root().join("BENCHMARKS.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n".into());
    let (open, close) = (
        format!("<!-- bench:{name} -->"),
        format!("<!-- /bench:{name} -->"),
    );
    let section = format!("{open}\n{}\n{close}", body.trim_end());
    let new = match (text.find(&open), text.find(&close)) {
        (Some(a), Some(b)) if a < b => {
            format!("{}{section}{}", &text[..a], &text[b + close.len()..])
        }
        _ => format!("{}\n{section}\n", text.trim_end()),
    };
    std::fs::write(&path, new).with_context(|| format!("write {}", path.display()))
}

/// The first line of a caught panic's message (`"panic"` when it carries none): why a
/// measured run could not be measured.
pub fn panic_line(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| p.downcast_ref::<&str>().copied())
        .unwrap_or("panic")
        .lines()
        .next()
        .unwrap_or("panic")
        .to_owned()
}
