//! Themes as data: `themes/*.toml` onto a struct of semantic roles.
//!
//! A theme file sets any subset of roles; the rest come from the built-in default, so a user
//! theme can override one colour. With `NO_COLOR` set, every role keeps only its modifiers
//! (bold, underline, ...) and backgrounds turn into reverse video. The shipped themes use only the
//! 16 ANSI colours.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use ratatui::style::{Color, Modifier, Style};
use serde::Deserialize;
use thiserror::Error;

/// Built-in themes by name.
const BUILTIN: [(&str, &str); 3] = [
    ("default", include_str!("../../themes/default.toml")),
    (
        "high-contrast",
        include_str!("../../themes/high-contrast.toml"),
    ),
    ("light", include_str!("../../themes/light.toml")),
];

/// Errors loading a theme.
#[derive(Debug, Error)]
pub enum ThemeError {
    /// Neither a built-in name nor a readable file.
    #[error("unknown theme {0:?}: use default, high-contrast, light, or a path to a .toml file")]
    Unknown(String),
    /// The file could not be read.
    #[error("cannot read theme file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TOML is malformed.
    #[error("theme {name}: {source}")]
    Parse {
        /// Theme name or path.
        name: String,
        /// The parser's message (with line and column).
        source: toml::de::Error,
    },
    /// A role or colour the theme names does not exist.
    #[error("theme {name}: {message}")]
    Invalid {
        /// Theme name or path.
        name: String,
        /// What is wrong.
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThemeFile {
    #[serde(default)]
    roles: BTreeMap<String, RoleSpec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleSpec {
    fg: Option<String>,
    bg: Option<String>,
    #[serde(default)]
    bold: bool,
    #[serde(default)]
    italic: bool,
    #[serde(default)]
    underline: bool,
    #[serde(default)]
    reversed: bool,
    #[serde(default)]
    dim: bool,
}

macro_rules! roles {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        /// Styles by what they mean, not by colour.
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct Theme {
            $($(#[doc = $doc])* pub $name: Style,)*
        }

        impl Theme {
            /// Every role name, as written in theme files.
            pub const ROLES: &'static [&'static str] = &[$(stringify!($name)),*];

            fn role_mut(&mut self, name: &str) -> Option<&mut Style> {
                match name {
                    $(stringify!($name) => Some(&mut self.$name),)*
                    _ => None,
                }
            }

            fn map(mut self, f: impl Fn(Style) -> Style) -> Self {
                $(self.$name = f(self.$name);)*
                self
            }
        }
    };
}

roles! {
    /// Ordinary text.
    text,
    /// Secondary text (ids, times).
    text_dim,
    /// Screen and panel titles.
    title,
    /// Unfocused borders.
    border,
    /// The focused panel's border.
    border_focused,
    /// Inactive tabs.
    tab,
    /// The current tab.
    tab_active,
    /// Table headers.
    header,
    /// The selected row.
    selected,
    /// The PINK SOMBRERO badge.
    badge_brand,
    /// Tainted / rogue / denied badges.
    badge_danger,
    /// Replacing / pending badges.
    badge_warn,
    /// Approved / sealed badges.
    badge_ok,
    /// The recording indicator.
    recording,
    /// Status line: success.
    status_ok,
    /// Status line and inline refusals.
    status_error,
    /// Keys in hints and help.
    key,
    /// Input fields.
    input,
    /// The focused input field.
    input_focused,
    /// The DEMO panel.
    demo,
}

impl Theme {
    /// Loads a built-in theme by name or a theme file by path, over the default theme.
    pub fn load(name_or_path: &str) -> Result<Theme, ThemeError> {
        let base = Theme::builtin("default")?;
        if let Some((_, text)) = BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
            return base.overlay(name_or_path, text);
        }
        if !Path::new(name_or_path).exists() {
            return Err(ThemeError::Unknown(name_or_path.to_string()));
        }
        let text = std::fs::read_to_string(name_or_path).map_err(|source| ThemeError::Read {
            path: name_or_path.to_string(),
            source,
        })?;
        base.overlay(name_or_path, &text)
    }

    /// Chooses the theme: the explicit choice (flag, env, config) or `default`; then applies
    /// `NO_COLOR` if `no_color` is set.
    pub fn choose(choice: Option<&str>, no_color: bool) -> Result<Theme, ThemeError> {
        let theme = Theme::load(choice.unwrap_or("default"))?;
        Ok(if no_color {
            theme.without_colour()
        } else {
            theme
        })
    }

    fn builtin(name: &str) -> Result<Theme, ThemeError> {
        let text = BUILTIN
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| *t)
            .ok_or_else(|| ThemeError::Unknown(name.to_string()))?;
        Theme::default().overlay(name, text)
    }

    /// Applies the roles a theme file sets on top of `self`.
    pub fn overlay(mut self, name: &str, text: &str) -> Result<Theme, ThemeError> {
        let file: ThemeFile = toml::from_str(text).map_err(|source| ThemeError::Parse {
            name: name.to_string(),
            source,
        })?;
        let invalid = |message: String| ThemeError::Invalid {
            name: name.to_string(),
            message,
        };
        for (role, spec) in file.roles {
            let style = spec.to_style().map_err(&invalid)?;
            let slot = self.role_mut(&role).ok_or_else(|| {
                invalid(format!(
                    "unknown role {role:?}; roles are: {}",
                    Theme::ROLES.join(", ")
                ))
            })?;
            *slot = style;
        }
        Ok(self)
    }

    /// The same theme with colours removed (for `NO_COLOR`): modifiers stay, and a role that
    /// had a background becomes reverse video so badges still stand out.
    pub fn without_colour(self) -> Theme {
        self.map(|s| {
            let plain = Style {
                fg: None,
                bg: None,
                ..s
            };
            if s.bg.is_some() {
                plain.add_modifier(Modifier::REVERSED)
            } else {
                plain
            }
        })
    }
}

impl RoleSpec {
    fn to_style(&self) -> Result<Style, String> {
        let colour = |c: &Option<String>| -> Result<Option<Color>, String> {
            c.as_deref()
                .map(|c| {
                    Color::from_str(c).map_err(|_| {
                        format!("unknown colour {c:?}: use an ANSI name (red, lightblue, ...) or #rrggbb")
                    })
                })
                .transpose()
        };
        let mut style = Style::default();
        if let Some(fg) = colour(&self.fg)? {
            style = style.fg(fg);
        }
        if let Some(bg) = colour(&self.bg)? {
            style = style.bg(bg);
        }
        for (on, m) in [
            (self.bold, Modifier::BOLD),
            (self.italic, Modifier::ITALIC),
            (self.underline, Modifier::UNDERLINED),
            (self.reversed, Modifier::REVERSED),
            (self.dim, Modifier::DIM),
        ] {
            if on {
                style = style.add_modifier(m);
            }
        }
        Ok(style)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_themes_load_and_set_every_role() {
        for (name, _) in BUILTIN {
            let t = Theme::load(name).unwrap();
            assert_ne!(t.badge_danger, Style::default(), "{name}");
        }
        let default: ThemeFile = toml::from_str(BUILTIN[0].1).unwrap();
        for role in Theme::ROLES {
            assert!(
                default.roles.contains_key(*role),
                "default theme lacks {role}"
            );
        }
    }

    #[test]
    fn partial_override_keeps_the_rest() {
        let base = Theme::load("default").unwrap();
        let t = base
            .clone()
            .overlay("mine", "[roles]\nbadge_danger = { fg = \"#ff0000\" }\n")
            .unwrap();
        assert_eq!(t.badge_danger, Style::default().fg(Color::Rgb(255, 0, 0)));
        assert_eq!(t.text, base.text);
    }

    #[test]
    fn bad_theme_files_fail_precisely() {
        let err = Theme::default()
            .overlay("x", "[roles]\nbadge_dangr = { fg = \"red\" }\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown role \"badge_dangr\""), "{err}");
        let err = Theme::default()
            .overlay("x", "[roles]\ntext = { fg = \"redd\" }\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown colour \"redd\""), "{err}");
        assert!(matches!(Theme::load("nope"), Err(ThemeError::Unknown(_))));
    }

    #[test]
    fn no_color_keeps_only_modifiers() {
        let t = Theme::choose(Some("default"), true).unwrap();
        assert_eq!(t.badge_danger.fg, None);
        assert_eq!(t.badge_danger.bg, None);
        assert!(t.badge_danger.add_modifier.contains(Modifier::REVERSED));
    }
}
