//! Fault injection for tests: reordered, duplicated or lost output, dropped sockets, failing
//! API operations and failing automations. Every hook is a counter consumed as faults fire,
//! so a test asks for exactly the faults it wants and the lab behaves normally afterwards.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Handle to the lab's fault injection; cheap to clone, shared by every session.
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    inner: Arc<Mutex<HookState>>,
}

#[derive(Debug, Default)]
struct HookState {
    reorder: usize,
    duplicate: usize,
    lose: usize,
    drop_socket_after: Option<usize>,
    fail_ops: HashMap<String, usize>,
    fail_automations: usize,
}

/// What the data channel does with one new output frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutputAction {
    /// Send it once, now.
    Send,
    /// Hold it back; `last` is true when the held batch is complete and goes out reversed.
    Hold {
        /// The batch is complete.
        last: bool,
    },
    /// Send it twice.
    Duplicate,
    /// Pretend to send it: only the resend timer will deliver it.
    Lose,
}

impl Hooks {
    fn state(&self) -> MutexGuard<'_, HookState> {
        // A panic while holding this lock cannot leave the counters inconsistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next `n` output frames are held back and then sent in reverse order (a batch
    /// still incomplete after the resend timeout goes out reversed as it is).
    pub fn reorder_output(&self, n: usize) {
        self.state().reorder = n;
    }

    /// Each of the next `n` output frames is sent twice.
    pub fn duplicate_output(&self, n: usize) {
        self.state().duplicate = n;
    }

    /// The next `n` output frames are lost on first transmission; only resends deliver them.
    pub fn lose_output(&self, n: usize) {
        self.state().lose = n;
    }

    /// After the next `n` output frames are sent, the websocket is dropped without a close
    /// frame (the session survives; the client must ResumeSession and reconnect).
    pub fn drop_socket_after_output(&self, n: usize) {
        self.state().drop_socket_after = Some(n);
    }

    /// The next `times` calls of API operation `op` (e.g. `AddTagsToResource`) fail with
    /// a non-retryable `AccessDeniedException`.
    pub fn fail_operation(&self, op: &str, times: usize) {
        self.state().fail_ops.insert(op.to_string(), times);
    }

    /// The next automation execution ends `Failed` and replaces nothing.
    pub fn fail_next_automation(&self) {
        self.state().fail_automations += 1;
    }

    /// Clears every pending fault.
    pub fn clear(&self) {
        *self.state() = HookState::default();
    }

    /// Decides the fate of one new output frame; the bool says "drop the socket after it".
    pub(crate) fn next_output_action(&self) -> (OutputAction, bool) {
        let mut s = self.state();
        let drop_socket = match s.drop_socket_after {
            Some(0) | Some(1) => {
                s.drop_socket_after = None;
                true
            }
            Some(n) => {
                s.drop_socket_after = Some(n - 1);
                false
            }
            None => false,
        };
        let action = if s.reorder > 0 {
            s.reorder -= 1;
            OutputAction::Hold {
                last: s.reorder == 0,
            }
        } else if s.duplicate > 0 {
            s.duplicate -= 1;
            OutputAction::Duplicate
        } else if s.lose > 0 {
            s.lose -= 1;
            OutputAction::Lose
        } else {
            OutputAction::Send
        };
        (action, drop_socket)
    }

    /// Ends a reorder batch early (the held frames went out on the resend timer).
    pub(crate) fn end_reorder(&self) {
        self.state().reorder = 0;
    }

    /// True if this call of `op` must fail (consumes one failure).
    pub(crate) fn take_operation_failure(&self, op: &str) -> bool {
        let mut s = self.state();
        match s.fail_ops.get_mut(op) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }

    /// True if this automation must fail (consumes one failure).
    pub(crate) fn take_automation_failure(&self) -> bool {
        let mut s = self.state();
        if s.fail_automations > 0 {
            s.fail_automations -= 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_consumed_then_behaviour_is_normal() {
        let h = Hooks::default();
        h.reorder_output(2);
        assert_eq!(h.next_output_action().0, OutputAction::Hold { last: false });
        assert_eq!(h.next_output_action().0, OutputAction::Hold { last: true });
        assert_eq!(h.next_output_action().0, OutputAction::Send);
        h.duplicate_output(1);
        h.drop_socket_after_output(2);
        assert_eq!(h.next_output_action(), (OutputAction::Duplicate, false));
        assert_eq!(h.next_output_action(), (OutputAction::Send, true));
        assert_eq!(h.next_output_action(), (OutputAction::Send, false));
        h.fail_operation("AddTagsToResource", 1);
        assert!(h.take_operation_failure("AddTagsToResource"));
        assert!(!h.take_operation_failure("AddTagsToResource"));
        h.fail_next_automation();
        h.clear();
        assert!(!h.take_automation_failure());
    }
}
