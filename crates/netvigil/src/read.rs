//! `netvigil read`: captures in, records out.

use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use engine::flow::FlowConfig;
use engine::record::FlowRecord;
use engine::{Engine, EngineConfig, Frame, Record};

use crate::judging::Judging;
use crate::summary::{FileSummary, Summary};
use crate::{Format, ReadArgs};

/// Reads every file in turn; a file that cannot be read is reported on stderr and the others
/// are still read. Exit status 1 when any file failed.
pub fn run(args: &ReadArgs) -> Result<ExitCode> {
    let stdout = io::stdout();
    let judge = args.format == Format::Jsonl && !args.no_judge;
    // With judging on, the judging thread owns standard output (it writes every record).
    let w: Box<dyn Write> = if judge {
        Box::new(io::sink())
    } else {
        Box::new(BufWriter::with_capacity(1 << 18, stdout.lock()))
    };
    let mut out = Output::new(args.format, w);
    if judge {
        // Offline: no reverse DNS (reading a capture sends nothing to the network).
        let mut j = Judging::new(engine::judge::Config::default(), None);
        j.alerting = args.alerts;
        out.judging = Some(JudgeThread::spawn(j));
    }
    if args.store {
        out.store = Some(crate::history::StoreSink::open(args.data_dir.as_deref())?);
    }
    let progress = !args.no_progress && io::stderr().is_terminal();
    let mut summary = Summary::new(args.top);
    if args.format == Format::Table && !args.no_judge {
        let mut j = Judging::new(engine::judge::Config::default(), None);
        j.alerting = false;
        summary = summary.with_judging(j);
    }
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
    if let Err(e) = out.finish_judging() {
        if e.kind() == io::ErrorKind::BrokenPipe {
            return Ok(ExitCode::SUCCESS);
        }
        return Err(e).context("writing to standard output");
    }
    if let Err(e) = out.w.flush() {
        if e.kind() == io::ErrorKind::BrokenPipe {
            return Ok(ExitCode::SUCCESS);
        }
        return Err(e).context("writing to standard output");
    }
    if let Some(st) = out.store.take() {
        st.finish()?;
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
        sample_bytes: if args.store { args.sample_bytes } else { 0 },
        lan: args.gateway.then(|| crate::gateway::lan_config(&args.lan)),
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
            if let Some(st) = &mut out.store {
                st.take_samples(&mut engine, &records);
            }
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
    if let Some(st) = &mut out.store {
        st.take_samples(&mut engine, &records);
    }
    out.records(&mut records, summary).context("writing records")?;
    if let Some(n) = read.truncated_tail {
        tracing::warn!(
            file = %path.display(),
            missing_bytes = n,
            packets = read.packets,
            "{}: the last record is cut short ({n} bytes missing or incomplete); {} packets before it were read",
            path.display(),
            read.packets
        );
    }
    if let Some(e) = &read.error {
        tracing::warn!(
            file = %path.display(),
            error = %e,
            packets = read.packets,
            "{}: stopped reading at a damaged record ({e}); {} packets before it were read",
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
    /// Scores, flags, sentences and alerts (jsonl only).
    judging: Option<JudgeThread>,
    /// Records waiting to go to the judging thread.
    pending: Vec<Record>,
    /// `--store`: the history database.
    store: Option<crate::history::StoreSink>,
}

/// Judging and writing jsonl on a second thread, so the packet path (capture reading, the
/// engine) does not wait for scores and sentences: batches of records go over a bounded
/// channel; the thread judges them and writes them to standard output.
struct JudgeThread {
    tx: Option<std::sync::mpsc::SyncSender<Vec<Record>>>,
    handle: Option<std::thread::JoinHandle<io::Result<()>>>,
}

impl JudgeThread {
    fn spawn(mut j: Judging) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Record>>(64);
        let handle = std::thread::Builder::new()
            .name("judge".into())
            .spawn(move || -> io::Result<()> {
                let stdout = io::stdout();
                let mut w = BufWriter::with_capacity(1 << 18, stdout.lock());
                let mut line = String::with_capacity(1024);
                let write_alerts = |j: &mut Judging, w: &mut BufWriter<_>, line: &mut String| {
                    for a in j.alerts.drain(..) {
                        line.clear();
                        a.write_json(line);
                        line.push('\n');
                        w.write_all(line.as_bytes())?;
                    }
                    io::Result::Ok(())
                };
                for batch in rx {
                    for r in &batch {
                        line.clear();
                        j.judge_into(r, None, &mut line);
                        line.push('\n');
                        w.write_all(line.as_bytes())?;
                        write_alerts(&mut j, &mut w, &mut line)?;
                    }
                }
                // After the last file: the baselines close their last minute (volume alerts).
                let end = j.last_ts.saturating_add(60 * 1_000_000_000);
                j.tick(end);
                write_alerts(&mut j, &mut w, &mut line)?;
                w.flush()
            })
            .expect("spawn the judging thread");
        Self {
            tx: Some(tx),
            handle: Some(handle),
        }
    }

    /// Hands a batch over; a closed channel means the thread stopped (its error comes from
    /// `finish`).
    fn send(&mut self, batch: Vec<Record>) -> io::Result<()> {
        match self.tx.as_ref().map(|tx| tx.send(batch)) {
            Some(Ok(())) => Ok(()),
            _ => self.finish().and(Err(io::Error::from(io::ErrorKind::BrokenPipe))),
        }
    }

    /// Closes the channel and waits for the thread to write everything.
    fn finish(&mut self) -> io::Result<()> {
        self.tx = None;
        match self.handle.take().map(|h| h.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(io::Error::other("the judging thread panicked")),
            None => Ok(()),
        }
    }
}

impl<W: Write> Output<W> {
    fn new(format: Format, w: W) -> Self {
        Self {
            format,
            w,
            line: String::with_capacity(512),
            judging: None,
            pending: Vec::new(),
            store: None,
        }
    }

    fn header(&mut self) -> io::Result<()> {
        if self.format == Format::Csv {
            writeln!(self.w, "{}", FlowRecord::CSV_HEADER)?;
        }
        Ok(())
    }

    /// Sends what waits to the judging thread, then waits for it to finish writing.
    fn finish_judging(&mut self) -> io::Result<()> {
        self.send_pending()?;
        match &mut self.judging {
            Some(t) => t.finish(),
            None => Ok(()),
        }
    }

    fn send_pending(&mut self) -> io::Result<()> {
        if let Some(t) = &mut self.judging
            && !self.pending.is_empty()
        {
            t.send(std::mem::take(&mut self.pending))?;
        }
        Ok(())
    }

    fn records(&mut self, records: &mut Vec<Record>, summary: &mut Summary) -> io::Result<()> {
        if let Some(st) = &mut self.store {
            st.add(records).map_err(io::Error::other)?;
        }
        for r in records.drain(..) {
            match self.format {
                Format::Table => summary.record(&r),
                Format::Jsonl if self.judging.is_some() => {
                    self.pending.push(r);
                    if self.pending.len() >= 1024 {
                        self.send_pending()?;
                    }
                }
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
