//! The terminal: raw mode and the alternate screen, undone on every exit path.
//!
//! `TerminalGuard` restores on `Drop`; a panic hook calls the same free [`restore`] function
//! (it builds nothing, so it cannot panic again) before the default hook prints the message.

use std::io::{self, Stdout, Write};
use std::sync::Once;

use crossterm::event::{DisableBracketedPaste, EnableBracketedPaste};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

/// The ratatui terminal over stdout.
pub type Term = Terminal<CrosstermBackend<Stdout>>;

/// Puts the terminal back: leaves the alternate screen, shows the cursor, ends raw mode.
/// Errors are ignored: this runs on the way out, where there is nobody left to tell.
pub fn restore() {
    let _ = execute!(
        io::stdout(),
        DisableBracketedPaste,
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
    let _ = disable_raw_mode();
}

fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}

fn enter() -> io::Result<()> {
    enable_raw_mode()?;
    execute!(io::stdout(), EnterAlternateScreen, EnableBracketedPaste)
}

/// Owns the terminal while the UI runs.
pub struct TerminalGuard {
    /// The ratatui terminal.
    pub terminal: Term,
}

impl TerminalGuard {
    /// Enters raw mode and the alternate screen (and installs the panic hook once).
    pub fn enter() -> io::Result<Self> {
        install_panic_hook();
        if let Err(e) = enter() {
            restore();
            return Err(e);
        }
        match Terminal::new(CrosstermBackend::new(io::stdout())) {
            Ok(terminal) => Ok(TerminalGuard { terminal }),
            Err(e) => {
                restore();
                Err(e)
            }
        }
    }

    /// Hands the terminal to something else (the player) until [`TerminalGuard::resume`].
    pub fn suspend(&mut self) {
        restore();
    }

    /// Takes the terminal back after [`TerminalGuard::suspend`] and redraws from scratch.
    pub fn resume(&mut self) -> io::Result<()> {
        enter()?;
        self.terminal.clear()
    }

    /// Rings the terminal bell.
    pub fn bell(&mut self) -> io::Result<()> {
        let mut out = io::stdout();
        out.write_all(b"\x07")?;
        out.flush()
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}
