//! Themes as data: `themes/*.toml` onto a struct of semantic roles.
//!
//! A theme file sets any subset of roles; the rest come from the built-in default, so a user
//! theme can override one colour. With `NO_COLOR` set, every role keeps only its modifiers
//! (bold, underline, ...) and backgrounds turn into reverse video. The shipped themes use only the
//! 16 ANSI colours.
//!
//! The built-in themes are compiled in, so an installed binary needs no `themes/` folder; a
//! `NAME.toml` in the user's themes directory ([`user_themes_dir`]) changes the built-in of
//! that name, or adds a theme `--theme NAME` chooses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
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

/// The user's themes directory: `themes/` in the config dir (`~/.config/pink-sombrero/themes`
/// on Linux).
pub fn user_themes_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "pink-sombrero").map(|p| p.config_dir().join("themes"))
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
        base.overlay_file(Path::new(name_or_path))
    }

    /// Like [`Theme::load`], but a plain name with a `NAME.toml` in `dir` takes that file,
    /// over the built-in of that name (or the default): files on disk win.
    pub fn load_in(name_or_path: &str, dir: Option<&Path>) -> Result<Theme, ThemeError> {
        let plain = !name_or_path.is_empty()
            && name_or_path
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        let file = dir
            .filter(|_| plain)
            .map(|d| d.join(format!("{name_or_path}.toml")))
            .filter(|f| f.exists());
        let Some(file) = file else {
            return Theme::load(name_or_path);
        };
        let base = match Theme::load(name_or_path) {
            Err(ThemeError::Unknown(_)) => Theme::builtin("default")?,
            other => other?,
        };
        base.overlay_file(&file)
    }

    /// Chooses the theme: the explicit choice (flag, env, config) or `default`; then applies
    /// `NO_COLOR` if `no_color` is set.
    pub fn choose(choice: Option<&str>, no_color: bool) -> Result<Theme, ThemeError> {
        Theme::choose_in(choice, None, no_color)
    }

    /// [`Theme::choose`] with the user's theme files in `dir` (see [`Theme::load_in`]).
    pub fn choose_in(
        choice: Option<&str>,
        dir: Option<&Path>,
        no_color: bool,
    ) -> Result<Theme, ThemeError> {
        let theme = Theme::load_in(choice.unwrap_or("default"), dir)?;
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

    /// Applies a theme file on top of `self`.
    fn overlay_file(self, path: &Path) -> Result<Theme, ThemeError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ThemeError::Read {
            path: name.clone(),
            source,
        })?;
        self.overlay(&name, &text)
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
    fn files_on_disk_override_builtins_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let mine = "[roles]\nbadge_brand = { fg = \"#010203\" }\n";
        std::fs::write(dir.path().join("light.toml"), mine).unwrap();
        std::fs::write(dir.path().join("mine.toml"), mine).unwrap();
        let light = Theme::load("light").unwrap();
        let t = Theme::load_in("light", Some(dir.path())).unwrap();
        assert_eq!(t.badge_brand, Style::default().fg(Color::Rgb(1, 2, 3)));
        assert_eq!(t.text, light.text, "the rest of the built-in stays");
        let t = Theme::load_in("mine", Some(dir.path())).unwrap();
        assert_eq!(t.text, Theme::load("default").unwrap().text);
        // Without a file of that name, or for a path, the dir is not consulted.
        assert_eq!(
            Theme::load_in("default", Some(dir.path())).unwrap(),
            Theme::load("default").unwrap()
        );
        assert!(matches!(
            Theme::load_in("../mine", Some(&dir.path().join("x"))),
            Err(ThemeError::Unknown(_))
        ));
        std::fs::write(dir.path().join("bad.toml"), "[roles]\nnope = {}\n").unwrap();
        assert!(matches!(
            Theme::load_in("bad", Some(dir.path())),
            Err(ThemeError::Invalid { .. })
        ));
    }

    #[test]
    fn no_color_keeps_only_modifiers() {
        let t = Theme::choose(Some("default"), true).unwrap();
        assert_eq!(t.badge_danger.fg, None);
        assert_eq!(t.badge_danger.bg, None);
        assert!(t.badge_danger.add_modifier.contains(Modifier::REVERSED));
    }
}
