//! The replay model: pure state, the clock passed in, keyframes for seeking.
//!
//! Timing follows asciinema's player: the position is computed from an anchor
//! (`position = anchor_pos + (now - anchor_now) * speed`), so playback never drifts and
//! pausing or changing speed just re-anchors. Idle gaps longer than the idle limit are
//! compressed when the effective timeline is built. Every few seconds or kilobytes of output
//! the terminal state is kept as a keyframe (`Screen::state_formatted()`), so a seek restores
//! the nearest keyframe and replays at most one interval: seek cost does not grow with length.

use std::io::BufRead;
use std::path::Path;
use std::time::Duration;

use thiserror::Error;
use tui_term::vt100;

use super::cast::{Event, EventKind, Header, parse_event, parse_header};

/// Playback speeds offered by `+`/`-`.
pub const SPEEDS: [f64; 7] = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0];

/// Problems loading a cast for replay.
#[derive(Debug, Error)]
pub enum PlayerError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The first line is not an asciicast v2 header.
    #[error(transparent)]
    Header(#[from] super::cast::CastError),
    /// The file is empty.
    #[error("the recording is empty")]
    Empty,
}

/// A cast loaded into memory.
#[derive(Debug, Clone)]
pub struct Recording {
    /// The header.
    pub header: Header,
    /// Events in file order, times clamped so they never decrease.
    pub events: Vec<Event>,
    /// 1-based lines that could not be parsed and were skipped (a crash can cut the last one).
    pub skipped_lines: Vec<u64>,
}

impl Recording {
    /// Reads a cast file.
    pub fn load(path: &Path) -> Result<Self, PlayerError> {
        let io = |source| PlayerError::Io {
            path: path.display().to_string(),
            source,
        };
        let f = std::fs::File::open(path).map_err(io)?;
        Self::parse(std::io::BufReader::with_capacity(1 << 20, f)).map_err(|e| match e {
            PlayerError::Io { source, .. } => io(source),
            other => other,
        })
    }

    /// Reads a cast from any reader.
    pub fn parse(reader: impl BufRead) -> Result<Self, PlayerError> {
        let mut lines = reader.lines();
        let first = lines
            .next()
            .ok_or(PlayerError::Empty)?
            .map_err(|source| PlayerError::Io {
                path: String::new(),
                source,
            })?;
        let header = parse_header(&first)?;
        let mut rec = Recording {
            header,
            events: Vec::new(),
            skipped_lines: Vec::new(),
        };
        let mut last = 0.0f64;
        for (n, line) in lines.enumerate() {
            let line_no = n as u64 + 2;
            let parsed = line.ok().and_then(|l| parse_event(&l, line_no).ok());
            match parsed {
                Some(mut ev) => {
                    ev.time = ev.time.max(last);
                    last = ev.time;
                    rec.events.push(ev);
                }
                None => rec.skipped_lines.push(line_no),
            }
        }
        Ok(rec)
    }
}

/// How the player builds its timeline and keyframes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlayerConfig {
    /// Pauses longer than this many seconds are shortened to it (`None`: keep them).
    pub idle_limit: Option<f64>,
    /// Keep a keyframe at least this often (recorded seconds).
    pub keyframe_secs: f64,
    /// ... and at least every this many output bytes.
    pub keyframe_bytes: usize,
}

impl Default for PlayerConfig {
    fn default() -> Self {
        PlayerConfig {
            idle_limit: Some(2.0),
            keyframe_secs: 2.0,
            keyframe_bytes: 64 * 1024,
        }
    }
}

#[derive(Debug, Clone)]
struct Keyframe {
    /// Events before this index are in the snapshot.
    event: usize,
    rows: u16,
    cols: u16,
    state: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
struct Anchor {
    now: Duration,
    pos: f64,
}

/// The replay state of one recording.
pub struct Player {
    rec: Recording,
    config: PlayerConfig,
    /// Effective (idle-compressed) time of each event.
    times: Vec<f64>,
    keyframes: Vec<Keyframe>,
    parser: vt100::Parser,
    /// Events `0..applied` are on the screen.
    applied: usize,
    pos: f64,
    playing: Option<Anchor>,
    speed_idx: usize,
    search: Option<String>,
}

impl std::fmt::Debug for Player {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Player")
            .field("events", &self.rec.events.len())
            .field("keyframes", &self.keyframes.len())
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

fn initial_size(header: &Header) -> (u16, u16) {
    // vt100 needs at least one row and column.
    (header.height.max(1), header.width.max(1))
}

fn apply(parser: &mut vt100::Parser, ev: &Event) {
    match ev.kind {
        EventKind::Output => parser.process(ev.data.as_bytes()),
        EventKind::Resize => {
            if let Some((cols, rows)) = ev.resize_size() {
                parser.screen_mut().set_size(rows.max(1), cols.max(1));
            }
        }
        EventKind::Input | EventKind::Marker => {}
    }
}

fn effective_times(events: &[Event], idle_limit: Option<f64>) -> Vec<f64> {
    let mut out = Vec::with_capacity(events.len());
    let (mut prev_raw, mut t) = (0.0, 0.0);
    for ev in events {
        let gap = ev.time - prev_raw;
        t += idle_limit.map_or(gap, |l| gap.min(l));
        prev_raw = ev.time;
        out.push(t);
    }
    out
}

impl Player {
    /// Builds the timeline and keyframes (one pass over the output).
    pub fn new(rec: Recording, config: PlayerConfig) -> Self {
        let (rows, cols) = initial_size(&rec.header);
        let mut parser = vt100::Parser::new(rows, cols, 0);
        let mut keyframes = Vec::new();
        let (mut kf_time, mut kf_bytes) = (f64::NEG_INFINITY, usize::MAX);
        for (i, ev) in rec.events.iter().enumerate() {
            if ev.time - kf_time >= config.keyframe_secs || kf_bytes >= config.keyframe_bytes {
                let (rows, cols) = parser.screen().size();
                keyframes.push(Keyframe {
                    event: i,
                    rows,
                    cols,
                    state: parser.screen().state_formatted(),
                });
                (kf_time, kf_bytes) = (ev.time, 0);
            }
            if ev.kind == EventKind::Output {
                kf_bytes += ev.data.len();
            }
            apply(&mut parser, ev);
        }
        let times = effective_times(&rec.events, config.idle_limit);
        Player {
            rec,
            config,
            times,
            keyframes,
            parser: vt100::Parser::new(rows, cols, 0),
            applied: 0,
            pos: 0.0,
            playing: None,
            speed_idx: 2,
            search: None,
        }
    }

    /// The recording.
    pub fn recording(&self) -> &Recording {
        &self.rec
    }

    /// The terminal as of the current position.
    pub fn screen(&self) -> &vt100::Screen {
        self.parser.screen()
    }

    /// Length of the (idle-compressed) timeline in seconds.
    pub fn duration(&self) -> f64 {
        self.times.last().copied().unwrap_or(0.0)
    }

    /// Current position in seconds.
    pub fn position(&self) -> f64 {
        self.pos
    }

    /// Whether playback is running.
    pub fn is_playing(&self) -> bool {
        self.playing.is_some()
    }

    /// Current speed factor.
    pub fn speed(&self) -> f64 {
        SPEEDS[self.speed_idx]
    }

    /// Number of keyframes kept.
    pub fn keyframe_count(&self) -> usize {
        self.keyframes.len()
    }

    /// Sets the speed to the offered value nearest `speed`.
    pub fn set_speed(&mut self, speed: f64, now: Duration) {
        self.reanchor(now);
        self.speed_idx = SPEEDS
            .iter()
            .enumerate()
            .min_by(|a, b| (a.1 - speed).abs().total_cmp(&(b.1 - speed).abs()))
            .map_or(2, |(i, _)| i);
    }

    /// Next faster speed (up to 16x).
    pub fn faster(&mut self, now: Duration) {
        self.reanchor(now);
        self.speed_idx = (self.speed_idx + 1).min(SPEEDS.len() - 1);
    }

    /// Next slower speed (down to 0.25x).
    pub fn slower(&mut self, now: Duration) {
        self.reanchor(now);
        self.speed_idx = self.speed_idx.saturating_sub(1);
    }

    /// Changes the idle limit; the position keeps pointing at the same event.
    pub fn set_idle_limit(&mut self, idle_limit: Option<f64>, now: Duration) {
        let event = self.applied;
        self.config.idle_limit = idle_limit;
        self.times = effective_times(&self.rec.events, idle_limit);
        let pos = event.checked_sub(1).map_or(0.0, |i| self.times[i]);
        self.seek(pos, now);
    }

    /// Starts playing (from the start if at the end).
    pub fn play(&mut self, now: Duration) {
        if self.pos >= self.duration() {
            self.seek(0.0, now);
        }
        self.playing = Some(Anchor { now, pos: self.pos });
    }

    /// Pauses.
    pub fn pause(&mut self, now: Duration) {
        self.tick(now);
        self.playing = None;
    }

    /// Play/pause.
    pub fn toggle(&mut self, now: Duration) {
        if self.is_playing() {
            self.pause(now);
        } else {
            self.play(now);
        }
    }

    fn reanchor(&mut self, now: Duration) {
        self.tick(now);
        if self.playing.is_some() {
            self.playing = Some(Anchor { now, pos: self.pos });
        }
    }

    /// Advances playback to `now`; stops at the end.
    pub fn tick(&mut self, now: Duration) {
        let Some(anchor) = self.playing else { return };
        let elapsed = now.saturating_sub(anchor.now).as_secs_f64();
        let mut pos = anchor.pos + elapsed * self.speed();
        if pos >= self.duration() {
            pos = self.duration();
            self.playing = None;
        }
        self.pos = pos;
        self.show_events(self.times.partition_point(|t| *t <= pos));
    }

    /// Time until the next event would change the screen at the current speed (for redraw timers).
    pub fn time_to_next_event(&self) -> Option<Duration> {
        self.playing?;
        let next = self.times.get(self.applied)?;
        Some(Duration::from_secs_f64(
            ((next - self.pos) / self.speed()).max(0.0),
        ))
    }

    /// Jumps to `t` seconds (clamped).
    pub fn seek(&mut self, t: f64, now: Duration) {
        let t = t.clamp(0.0, self.duration());
        self.pos = t;
        self.show_events(self.times.partition_point(|x| *x <= t));
        if self.playing.is_some() {
            self.playing = Some(Anchor { now, pos: t });
        }
    }

    /// Where event `index` (in file order) sits on the (idle-compressed) timeline.
    pub fn event_time(&self, index: usize) -> Option<f64> {
        self.times.get(index).copied()
    }

    /// Moves by `delta` seconds.
    pub fn seek_by(&mut self, delta: f64, now: Duration) {
        self.tick(now);
        self.seek(self.pos + delta, now);
    }

    /// Puts events `0..target` on the screen, from the nearest keyframe if that is shorter.
    fn show_events(&mut self, target: usize) {
        let k = self.keyframes.partition_point(|k| k.event <= target);
        if let Some(kf) = k.checked_sub(1).and_then(|k| self.keyframes.get(k))
            && (target < self.applied || kf.event > self.applied)
        {
            self.parser = vt100::Parser::new(kf.rows, kf.cols, 0);
            self.parser.process(&kf.state);
            self.applied = kf.event;
        }
        // Here applied <= target: going back always restored a keyframe at or before target.
        for ev in &self.rec.events[self.applied.min(target)..target] {
            apply(&mut self.parser, ev);
        }
        self.applied = target;
    }

    /// Markers as `(effective time, label)`.
    pub fn markers(&self) -> Vec<(f64, &str)> {
        self.rec
            .events
            .iter()
            .zip(&self.times)
            .filter(|(e, _)| e.kind == EventKind::Marker)
            .map(|(e, t)| (*t, e.data.as_str()))
            .collect()
    }

    /// The last marker at or before the position.
    pub fn current_marker(&self) -> Option<&str> {
        self.rec.events[..self.applied]
            .iter()
            .rev()
            .find(|e| e.kind == EventKind::Marker)
            .map(|e| e.data.as_str())
    }

    /// Seeks to the next marker; returns its label.
    pub fn next_marker(&mut self, now: Duration) -> Option<String> {
        self.tick(now);
        let pos = self.pos;
        let (t, label) = self
            .markers()
            .into_iter()
            .find(|(t, _)| *t > pos + 1e-9)
            .map(|(t, l)| (t, l.to_string()))?;
        self.seek(t, now);
        Some(label)
    }

    /// Seeks to the previous marker (one well before the position, so repeats walk back).
    pub fn prev_marker(&mut self, now: Duration) -> Option<String> {
        self.tick(now);
        let pos = self.pos;
        let (t, label) = self
            .markers()
            .into_iter()
            .rev()
            .find(|(t, _)| *t < pos - 0.5)
            .map(|(t, l)| (t, l.to_string()))?;
        self.seek(t, now);
        Some(label)
    }

    /// Searches output for `query` after the current position (wrapping); seeks to the match.
    /// Lowercase queries match any case. Returns the match time.
    pub fn search(&mut self, query: &str, now: Duration) -> Option<f64> {
        self.search = Some(query.to_string());
        self.search_next(now)
    }

    /// Repeats the last search.
    pub fn search_next(&mut self, now: Duration) -> Option<f64> {
        self.tick(now);
        let query = self.search.clone().filter(|q| !q.is_empty())?;
        let fold = !query.chars().any(char::is_uppercase);
        let n = self.rec.events.len();
        let start = self.applied;
        let hit = (start..n)
            .chain(0..start.min(n))
            .find(|&i| self.output_matches(i, &query, fold))?;
        let t = self.times[hit];
        self.pos = t;
        self.show_events(hit + 1);
        if self.playing.is_some() {
            self.playing = Some(Anchor { now, pos: t });
        }
        Some(t)
    }

    /// Does output event `i` contain `query`, also across the boundary with the previous one?
    fn output_matches(&self, i: usize, query: &str, fold: bool) -> bool {
        let ev = &self.rec.events[i];
        if ev.kind != EventKind::Output {
            return false;
        }
        let contains = |hay: &str| {
            if fold {
                hay.to_lowercase().contains(query)
            } else {
                hay.contains(query)
            }
        };
        if contains(&ev.data) {
            return true;
        }
        let Some(prev) = self.rec.events[..i]
            .iter()
            .rev()
            .find(|e| e.kind == EventKind::Output)
        else {
            return false;
        };
        let tail_start = prev
            .data
            .char_indices()
            .rev()
            .nth(query.chars().count().saturating_sub(2))
            .map_or(0, |(i, _)| i);
        let head_end = ev
            .data
            .char_indices()
            .nth(query.chars().count().saturating_sub(1))
            .map_or(ev.data.len(), |(i, _)| i);
        contains(&format!(
            "{}{}",
            &prev.data[tail_start..],
            &ev.data[..head_end]
        ))
    }

    /// The last search query.
    pub fn search_query(&self) -> Option<&str> {
        self.search.as_deref()
    }

    /// Keystrokes typed in the `window` seconds before the position, control keys made visible.
    pub fn recent_input(&self, window: f64) -> String {
        let from = self.pos - window;
        let mut parts: Vec<&str> = self.rec.events[..self.applied]
            .iter()
            .zip(&self.times)
            .rev()
            .take_while(|(_, t)| **t >= from)
            .filter(|(e, _)| e.kind == EventKind::Input)
            .map(|(e, _)| e.data.as_str())
            .collect();
        parts.reverse();
        parts.concat().chars().map(visible_key).collect()
    }
}

/// Shows a typed character: Enter as ⏎, Backspace as ⌫, Escape as ␛, others as ^X.
fn visible_key(c: char) -> String {
    match c {
        '\r' | '\n' => "⏎".into(),
        '\x7f' | '\x08' => "⌫".into(),
        '\x1b' => "␛".into(),
        '\t' => "⇥".into(),
        c if (c as u32) < 0x20 => format!("^{}", char::from(b'@' + c as u8)),
        c => c.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_keys_are_visible() {
        assert_eq!(visible_key('\u{3}'), "^C");
        assert_eq!(visible_key('\r'), "⏎");
        assert_eq!(visible_key('a'), "a");
    }

    #[test]
    fn idle_gaps_are_compressed() {
        let ev = |t| Event {
            time: t,
            kind: EventKind::Output,
            data: String::new(),
        };
        let times = effective_times(&[ev(1.0), ev(11.0), ev(11.5)], Some(2.0));
        assert_eq!(times, [1.0, 3.0, 3.5]);
    }
}
