//! `netvigil read`: captures in, records out.

use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use engine::flow::FlowConfig;
use engine::record::FlowRecord;
use engine::{Engine, EngineConfig, Frame, Record};

use crate::summary::{FileSummary, Summary};
use crate::{Format, ReadArgs};

/// Reads every file in turn; a file that cannot be read is reported on stderr and the others
/// are still read. Exit status 1 when any file failed.
pub fn run(args: &ReadArgs) -> Result<ExitCode> {
    let stdout = io::stdout();
    let mut out = Output::new(args.format, BufWriter::with_capacity(1 << 18, stdout.lock()));
    let progress = !args.no_progress && io::stderr().is_terminal();
    let mut summary = Summary::new(args.top);
    let mut failed = 0usize;
    out.header()?;
    for path in &args.files {
        match read_one(path, args, &mut out, &mut summary, progress) {
            Ok(()) => {}
            Err(e) => {
                failed += 1;
                if is_broken_pipe(&e) {
                    return Ok(ExitCode::SUCCESS);
                }
                eprintln!("netvigil: {e:#}");
            }
        }
    }
    if args.format == Format::Table {
        summary.write(&mut out.w).context("writing the summary")?;
    }
    if let Err(e) = out.w.flush() {
        if e.kind() == io::ErrorKind::BrokenPipe {
            return Ok(ExitCode::SUCCESS);
        }
        return Err(e).context("writing to standard output");
    }
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

fn read_one(
    path: &Path,
    args: &ReadArgs,
    out: &mut Output<impl Write>,
    summary: &mut Summary,
    progress: bool,
) -> Result<()> {
    let cfg = EngineConfig {
        flows: FlowConfig {
            max_flows: usize::try_from(args.max_flows).unwrap_or(usize::MAX),
            ..FlowConfig::default()
        },
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(cfg);
    let mut records = Vec::with_capacity(64);
    let mut file = FileSummary::new(path);
    let mut write_err: Option<io::Error> = None;
    let mut bar = Progress::new(path, progress);
    let result = os::read_capture(
        path,
        |p| {
            if write_err.is_some() {
                return;
            }
            let frame = Frame {
                ts: p.ts_nanos,
                link: p.link,
                orig_len: p.orig_len,
                data: p.data,
            };
            file.frame(&frame);
            engine.ingest(&frame, &mut records);
            if !records.is_empty()
                && let Err(e) = out.records(&mut records, summary)
            {
                write_err = Some(e);
            }
        },
        |done, total| bar.update(done, total),
    );
    bar.finish();
    if let Some(e) = write_err {
        return Err(e).context("writing records");
    }
    let read = result?;
    engine.finish(&mut records);
    out.records(&mut records, summary).context("writing records")?;
    if let Some(n) = read.truncated_tail {
        eprintln!(
            "netvigil: warning: {}: the last record is cut short ({n} bytes missing or incomplete); {} packets before it were read",
            path.display(),
            read.packets
        );
    }
    if let Some(e) = &read.error {
        eprintln!(
            "netvigil: warning: {}: stopped reading at a damaged record ({e}); {} packets before it were read",
            path.display(),
            read.packets
        );
    }
    if args.stats {
        eprintln!("{}", stats_json(path, &read, &engine));
    }
    file.finish(&read, &engine);
    summary.add_file(file);
    Ok(())
}

/// The `--stats` line: one JSON object with the file's counters.
fn stats_json(path: &Path, read: &os::ReadSummary, engine: &Engine) -> String {
    use std::fmt::Write as _;
    let mut s = String::from("{\"type\":\"read_stats\",\"file\":");
    engine::record::write_json_str(&mut s, &path.display().to_string());
    let e = engine.stats();
    let c = engine.flow_counters();
    let _ = write!(
        s,
        ",\"packets\":{},\"frame_bytes\":{},\"non_ip_frames\":{},\"undecodable_frames\":{},\"ip_fragments\":{},\"reassembled\":{},\"truncated_tail\":{},\"flows\":{{\"created\":{},\"expired\":{},\"evicted\":{},\"flushed\":{},\"live\":{},\"peak_live\":{}}},\"anomalies\":{{",
        read.packets,
        e.frame_bytes,
        e.non_ip_frames,
        e.undecodable_frames,
        e.fragments,
        e.reassembled,
        read.truncated_tail.map_or("null".to_string(), |n| n.to_string()),
        c.created,
        c.expired,
        c.evicted,
        c.flushed,
        c.live,
        c.peak_live
    );
    for (i, (name, n)) in engine.anomalies().sorted().iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        engine::record::write_json_str(&mut s, name);
        let _ = write!(s, ":{n}");
    }
    s.push_str("}}");
    s
}

/// Where records go, in the chosen format.
struct Output<W: Write> {
    format: Format,
    w: W,
    line: String,
}

impl<W: Write> Output<W> {
    fn new(format: Format, w: W) -> Self {
        Self {
            format,
            w,
            line: String::with_capacity(512),
        }
    }

    fn header(&mut self) -> io::Result<()> {
        if self.format == Format::Csv {
            writeln!(self.w, "{}", FlowRecord::CSV_HEADER)?;
        }
        Ok(())
    }

    fn records(&mut self, records: &mut Vec<Record>, summary: &mut Summary) -> io::Result<()> {
        for r in records.drain(..) {
            match self.format {
                Format::Table => summary.record(&r),
                Format::Jsonl => {
                    self.line.clear();
                    r.write_json(&mut self.line);
                    self.line.push('\n');
                    self.w.write_all(self.line.as_bytes())?;
                }
                Format::Csv => {
                    // CSV is one flow per row; the message records are JSON-only.
                    let Record::Flow(f) = &r else { continue };
                    self.line.clear();
                    f.write_csv(&mut self.line);
                    self.line.push('\n');
                    self.w.write_all(self.line.as_bytes())?;
                }
            }
        }
        Ok(())
    }
}

/// A one-line progress bar on stderr, only when stderr is a terminal.
struct Progress {
    name: String,
    on: bool,
    shown: bool,
}

impl Progress {
    fn new(path: &Path, on: bool) -> Self {
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        Self {
            name,
            on,
            shown: false,
        }
    }

    fn update(&mut self, done: u64, total: u64) {
        if !self.on || total < (32 << 20) {
            return;
        }
        let pct = done.saturating_mul(100) / total.max(1);
        let filled = (pct / 4) as usize;
        eprint!(
            "\r{} [{}{}] {pct:>3}% {} of {}",
            self.name,
            "#".repeat(filled),
            " ".repeat(25 - filled.min(25)),
            crate::units::bytes(done),
            crate::units::bytes(total)
        );
        self.shown = true;
    }

    fn finish(&mut self) {
        if self.shown {
            eprint!("\r\x1b[2K");
        }
    }
}
