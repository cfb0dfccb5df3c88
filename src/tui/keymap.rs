//! Keys to actions, with a description for each binding. The help overlay and the footer hints
//! are generated from these tables, so they cannot drift from what the keys do.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::action::{Action, Screen};
use super::app::State;

/// Which table applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// A screen's list (its own keys, then the global ones).
    Screen(Screen),
    /// Typing a filter.
    Filtering,
    /// Typing into a form or prompt.
    Form,
    /// The help overlay.
    Help,
    /// The session pane owns the keyboard.
    Session,
}

/// One key binding.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    /// The key.
    pub code: KeyCode,
    /// Required modifiers.
    pub mods: KeyModifiers,
    /// How the key is shown.
    pub shown: &'static str,
    /// What it does.
    pub action: Action,
    /// What it does, in words.
    pub description: &'static str,
    /// Shown in the footer as a "what next" hint.
    pub hint: bool,
}

fn b(code: KeyCode, shown: &'static str, action: Action, description: &'static str) -> Binding {
    Binding {
        code,
        mods: KeyModifiers::NONE,
        shown,
        action,
        description,
        hint: false,
    }
}

fn hint(code: KeyCode, shown: &'static str, action: Action, description: &'static str) -> Binding {
    Binding {
        hint: true,
        ..b(code, shown, action, description)
    }
}

fn ctrl(c: char, shown: &'static str, action: Action, description: &'static str) -> Binding {
    Binding {
        mods: KeyModifiers::CONTROL,
        ..b(KeyCode::Char(c), shown, action, description)
    }
}

fn screen_keys(screen: Screen) -> Vec<Binding> {
    use KeyCode::Char;
    match screen {
        Screen::Fleet => vec![
            hint(
                Char('b'),
                "b",
                Action::StartRequest,
                "request access to the node",
            ),
            b(
                Char('E'),
                "E",
                Action::StartEmergency,
                "EMERGENCY request (if the policy lets you)",
            ),
            hint(Char('/'), "/", Action::StartFilter, "filter"),
        ],
        Screen::Requests => vec![
            hint(Char('m'), "m", Action::ToggleMine, "mine/all"),
            b(
                Char('c'),
                "c",
                Action::CancelRequest,
                "cancel the request (yours)",
            ),
            b(
                Char('w'),
                "w",
                Action::WatchSession,
                "watch the live session, read-only",
            ),
            b(
                Char('K'),
                "K",
                Action::KillSession,
                "end the live session (approvers)",
            ),
        ],
        Screen::Approvals => vec![
            hint(Char('a'), "a", Action::Approve, "approve"),
            hint(Char('d'), "d", Action::Deny, "deny"),
        ],
        Screen::Session => Vec::new(),
        Screen::Recordings => vec![
            hint(
                KeyCode::Enter,
                "Enter",
                Action::OpenRecording,
                "replay the recording",
            ),
            b(
                Char('r'),
                "r",
                Action::ToggleToReview,
                "to review (the review queue) / all",
            ),
        ],
        Screen::Audit => vec![hint(Char('/'), "/", Action::StartFilter, "filter events")],
    }
}

fn global_keys() -> Vec<Binding> {
    use KeyCode::Char;
    let mut keys = vec![
        b(
            Char('o'),
            "o",
            Action::OpenSession,
            "open your approved session (or return to it)",
        ),
        hint(Char('u'), "u", Action::SwitchUser, "switch user"),
        hint(KeyCode::Tab, "Tab", Action::NextTab, "next screen"),
        b(
            KeyCode::BackTab,
            "S-Tab",
            Action::PrevTab,
            "previous screen",
        ),
    ];
    for (i, s) in Screen::ALL.iter().enumerate() {
        const DIGITS: [(char, &str); 6] = [
            ('1', "1"),
            ('2', "2"),
            ('3', "3"),
            ('4', "4"),
            ('5', "5"),
            ('6', "6"),
        ];
        let (c, shown) = DIGITS[i];
        keys.push(b(
            Char(c),
            shown,
            Action::GoTo(*s),
            "go to that screen (tab bar)",
        ));
    }
    keys.extend([
        b(KeyCode::Up, "↑", Action::Up, "move up"),
        b(Char('k'), "k", Action::Up, "move up"),
        b(KeyCode::Down, "↓", Action::Down, "move down"),
        b(Char('j'), "j", Action::Down, "move down"),
        b(KeyCode::PageUp, "PgUp", Action::PageUp, "page up"),
        b(KeyCode::PageDown, "PgDn", Action::PageDown, "page down"),
        b(
            Char('D'),
            "D",
            Action::ToggleDemo,
            "DEMO panel: whole / one line",
        ),
        hint(Char('?'), "?", Action::Help, "all keys"),
        hint(Char('q'), "q", Action::Back, "back / quit"),
        b(KeyCode::Esc, "Esc", Action::Back, "back / quit"),
        ctrl('c', "C-c", Action::Quit, "quit"),
    ]);
    keys
}

fn text_keys(submit: &'static str, back: &'static str) -> Vec<Binding> {
    vec![
        hint(KeyCode::Enter, "Enter", Action::Submit, submit),
        hint(KeyCode::Esc, "Esc", Action::Back, back),
        b(
            KeyCode::Backspace,
            "Bksp",
            Action::Backspace,
            "delete a character",
        ),
    ]
}

/// The bindings of a context, most specific first.
pub fn bindings(context: Context) -> Vec<Binding> {
    match context {
        Context::Screen(s) => {
            let mut keys = screen_keys(s);
            keys.extend(global_keys());
            keys
        }
        Context::Filtering => text_keys("keep the filter", "clear the filter"),
        Context::Form => {
            let mut keys = text_keys("next field; on the code: submit", "cancel");
            keys.extend([
                hint(KeyCode::Tab, "Tab", Action::NextField, "next field"),
                b(
                    KeyCode::BackTab,
                    "S-Tab",
                    Action::PrevField,
                    "previous field",
                ),
                ctrl(
                    'e',
                    "C-e",
                    Action::ToggleEmergency,
                    "request form: emergency door on/off",
                ),
            ]);
            keys
        }
        Context::Help => vec![
            hint(KeyCode::Esc, "Esc", Action::Back, "close help"),
            b(KeyCode::Char('q'), "q", Action::Back, "close help"),
            b(KeyCode::Char('?'), "?", Action::Back, "close help"),
        ],
        Context::Session => Vec::new(),
    }
}

/// Whether an action asks for the acting user's TOTP code (opening a session: when the policy
/// wants one at open, `mfa.at_open`, the default).
pub fn needs_code(action: &Action, code_at_open: bool) -> bool {
    match action {
        Action::StartRequest
        | Action::StartEmergency
        | Action::Approve
        | Action::Deny
        | Action::SwitchUser
        | Action::KillSession => true,
        Action::OpenSession => code_at_open,
        _ => false,
    }
}

/// The context the state is in.
pub fn context(state: &State) -> Context {
    if state.help {
        Context::Help
    } else {
        base_context(state)
    }
}

/// The context under the help overlay (what help describes).
pub fn base_context(state: &State) -> Context {
    if state.form.is_some() {
        Context::Form
    } else if state.session_attached() {
        Context::Session
    } else if (state.screen == Screen::Fleet && state.fleet_filter.editing)
        || (state.screen == Screen::Audit && state.audit_filter.editing)
    {
        Context::Filtering
    } else {
        Context::Screen(state.screen)
    }
}

/// The action for a key in the current state, if any.
pub fn action_for(state: &State, key: KeyEvent) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let ctx = context(state);
    if ctx == Context::Session {
        return Some(Action::SessionKey(key));
    }
    // Shift is implied by the character itself (`?`, `S-Tab`), so only Ctrl/Alt must match.
    let relevant = key.modifiers & (KeyModifiers::CONTROL | KeyModifiers::ALT);
    let bound = bindings(ctx)
        .into_iter()
        .find(|b| b.code == key.code && b.mods == relevant)
        .map(|b| b.action);
    if bound.is_some() {
        return bound;
    }
    match (ctx, key.code) {
        (Context::Filtering | Context::Form, KeyCode::Char(c)) if relevant.is_empty() => {
            Some(Action::Input(c))
        }
        (Context::Filtering | Context::Form, KeyCode::Char('c')) => Some(Action::Quit),
        _ => None,
    }
}

/// Help lines for a context: (keys, description, asks for a code), bindings with the same
/// description merged.
pub fn help_lines(context: Context, code_at_open: bool) -> Vec<(String, &'static str, bool)> {
    let mut lines: Vec<(String, &'static str, bool)> = Vec::new();
    for b in bindings(context) {
        match lines.iter_mut().find(|(_, d, _)| *d == b.description) {
            Some((keys, _, _)) => {
                keys.push('/');
                keys.push_str(b.shown);
            }
            None => lines.push((
                b.shown.to_string(),
                b.description,
                needs_code(&b.action, code_at_open),
            )),
        }
    }
    lines
}

/// Footer hints for a context: (key, short description).
pub fn hints(context: Context) -> Vec<(&'static str, &'static str)> {
    bindings(context)
        .into_iter()
        .filter(|b| b.hint)
        .map(|b| (b.shown, b.description))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn state() -> State {
        State::new("alice", chrono::Utc.timestamp_opt(0, 0).unwrap(), (100, 30))
    }

    #[test]
    fn no_key_is_bound_twice_in_a_context() {
        let mut contexts = vec![Context::Filtering, Context::Form, Context::Help];
        contexts.extend(Screen::ALL.map(Context::Screen));
        for ctx in contexts {
            let keys = bindings(ctx);
            for (i, a) in keys.iter().enumerate() {
                for c in &keys[i + 1..] {
                    assert!(
                        !(a.code == c.code && a.mods == c.mods),
                        "{ctx:?}: {} bound twice",
                        a.shown
                    );
                }
            }
        }
    }

    #[test]
    fn keys_map_by_context() {
        let mut s = state();
        let key = |c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE);
        assert_eq!(action_for(&s, key('b')), Some(Action::StartRequest));
        assert_eq!(action_for(&s, key('?')), Some(Action::Help));
        s.fleet_filter.editing = true;
        assert_eq!(action_for(&s, key('b')), Some(Action::Input('b')));
        s.fleet_filter.editing = false;
        s.screen = Screen::Approvals;
        assert_eq!(action_for(&s, key('a')), Some(Action::Approve));
        assert_eq!(action_for(&s, key('b')), None);
    }

    #[test]
    fn help_merges_aliases() {
        let lines = help_lines(Context::Screen(Screen::Fleet), true);
        assert!(lines.contains(&("↑/k".to_string(), "move up", false)));
        assert!(lines.contains(&(
            "1/2/3/4/5/6".to_string(),
            "go to that screen (tab bar)",
            false
        )));
        assert_eq!(
            lines[0],
            ("b".to_string(), "request access to the node", true)
        );
        let open = |at_open| {
            help_lines(Context::Screen(Screen::Requests), at_open)
                .into_iter()
                .find(|l| l.0 == "o")
                .map(|l| l.2)
        };
        assert_eq!((open(true), open(false)), (Some(true), Some(false)));
    }
}
