//! Raw leaf fields into model values, problems recorded at the field's line and column:
//! exec lists, working directories, environment mappings, secrets, database accounts and
//! durations. Used by every section of `validate*.rs`; plain-value checks are `values.rs`.

use std::path::PathBuf;
use std::time::Duration;

use super::locate::{FieldPath, Target};
use super::model::{DbAccount, EnvValue, EnvVar, OsUser};
use super::raw::{Exec, RawAccount, RawDuration, RawEnv, RawEnvValue};
use super::secrets;
use super::validate::{Validator, absolute};
use super::values;
use cluster::secret::Secret;

impl Validator<'_> {
    /// `password_file` or `password_env` under `at` (not both): the secret; `None` when
    /// neither is set or the one set is unusable (reported).
    pub(super) fn password_source(
        &mut self,
        at: &FieldPath,
        file: Option<String>,
        env: Option<String>,
    ) -> Option<Secret> {
        match (file, env) {
            (Some(_), Some(_)) => {
                self.problem(
                    &at.key("password_env"),
                    Target::Key,
                    "is set together with password_file; expected only one of password_file and password_env",
                );
                None
            }
            (Some(file), None) => {
                let field = at.key("password_file");
                self.secret_file(&field, &file)
                    .and_then(|s| self.one_line(&field, s))
            }
            (None, Some(var)) => {
                let field = at.key("password_env");
                self.secret_env(&field, &var)
                    .and_then(|s| self.one_line(&field, s))
            }
            (None, None) => None,
        }
    }

    /// `secret` when it is one line; otherwise reported at `field`.
    fn one_line(&mut self, field: &FieldPath, secret: Secret) -> Option<Secret> {
        match secrets::one_line(&secret) {
            Ok(()) => Some(secret),
            Err(e) => {
                self.problem(field, Target::Value, e);
                None
            }
        }
    }

    /// A database account under `at`: required, a user name of 1 to `max_user` characters
    /// (`example` shows one), and exactly one of `password_file` and `password_env`.
    pub(super) fn db_account(
        &mut self,
        at: &FieldPath,
        raw: Option<RawAccount>,
        max_user: usize,
        example: &str,
    ) -> Option<DbAccount> {
        let Some(RawAccount {
            user,
            password_file,
            password_env,
            password,
        }) = raw
        else {
            self.problem(
                at,
                Target::Key,
                "required; expected {user: NAME, password_file: PATH} or {user: NAME, password_env: VAR}",
            );
            return None;
        };
        if password.is_some() {
            self.problem(
                &at.key("password"),
                Target::Key,
                "inline passwords are not allowed; expected password_file: PATH or password_env: VAR",
            );
        }
        let user = match user {
            Some(u) if !u.is_empty() && u.chars().count() <= max_user => Some(u),
            Some(_) => {
                self.problem(
                    &at.key("user"),
                    Target::Value,
                    format!(
                        "expected a user name of 1 to {max_user} characters, e.g. user: {example}"
                    ),
                );
                None
            }
            None => {
                self.problem(
                    &at.key("user"),
                    Target::Key,
                    format!("required; expected a user name, e.g. user: {example}"),
                );
                None
            }
        };
        if password_file.is_none() && password_env.is_none() && password.is_none() {
            self.problem(
                at,
                Target::Key,
                "has no password; expected password_file: PATH or password_env: VAR",
            );
        }
        let secret = self.password_source(at, password_file, password_env);
        Some(DbAccount {
            user: user?,
            password: secret?,
        })
    }

    /// A port number at `field`: 1 to 65535.
    pub(super) fn port_number(&mut self, field: &FieldPath, p: i64) -> Option<u16> {
        match u16::try_from(p) {
            Ok(p) if p > 0 => Some(p),
            _ => {
                self.problem(
                    field,
                    Target::Value,
                    format!("{p} is out of range; expected a port from 1 to 65535"),
                );
                None
            }
        }
    }

    /// `exec` under `at`: required, non-empty, with a non-empty program.
    pub(super) fn exec(&mut self, at: &FieldPath, exec: Option<Exec>) -> Vec<String> {
        let field = at.key("exec");
        match exec {
            None => {
                self.problem(
                    &field,
                    Target::Key,
                    "required; expected a list like [prog, arg]",
                );
                Vec::new()
            }
            Some(Exec(list)) if list.is_empty() => {
                self.problem(
                    &field,
                    Target::Value,
                    "is empty; expected a list like [prog, arg]",
                );
                list
            }
            Some(Exec(list)) => {
                if list[0].trim().is_empty() {
                    self.problem(
                        &field.index(0),
                        Target::Value,
                        "the program is empty; expected a program name or path",
                    );
                }
                list
            }
        }
    }

    /// A working directory, resolved against the config directory.
    pub(super) fn cwd(&mut self, field: &FieldPath, cwd: Option<String>) -> Option<PathBuf> {
        let cwd = cwd?;
        if cwd.is_empty() {
            self.problem(field, Target::Value, "is empty; expected a directory path");
            return None;
        }
        Some(self.resolve(&cwd))
    }

    /// An OS user by name, looked up on this host now.
    pub(super) fn os_user(&mut self, field: &FieldPath, name: String) -> Option<OsUser> {
        if name.is_empty() {
            self.problem(field, Target::Value, "is empty; expected a user name");
            return None;
        }
        match nix::unistd::User::from_name(&name) {
            Ok(Some(u)) => Some(OsUser {
                name,
                uid: u.uid.as_raw(),
                gid: u.gid.as_raw(),
            }),
            Ok(None) => {
                self.problem(
                    field,
                    Target::Value,
                    format!("no user {name:?} on this host; expected an existing user (create it with `useradd --system {name}`)"),
                );
                None
            }
            Err(e) => {
                self.problem(
                    field,
                    Target::Value,
                    format!("cannot look up user {name:?}: {e}; expected an existing user"),
                );
                None
            }
        }
    }

    /// `path` made absolute against the config file's directory, with `.` components
    /// dropped (`./data-2` → `/etc/autopilot/data-2`).
    pub(super) fn resolve(&self, path: &str) -> PathBuf {
        absolute(&self.base_dir.join(path))
    }

    /// An environment mapping; secrets are read now.
    pub(super) fn env(&mut self, at: &FieldPath, raw: RawEnv) -> Vec<EnvVar> {
        let mut out: Vec<EnvVar> = Vec::with_capacity(raw.0.len());
        for (name, value) in raw.0 {
            let field = at.key(&name);
            if let Err(e) = values::env_name(&name) {
                self.problem(&field, Target::Key, e);
            } else if out.iter().any(|v| v.name == name) {
                self.problem(
                    &field,
                    Target::Key,
                    "is set twice; expected each variable once",
                );
            }
            let value = match value {
                RawEnvValue::Plain(v) => Some(EnvValue::Plain(v)),
                RawEnvValue::File(f) => self
                    .secret_file(&field.key("file"), &f)
                    .map(EnvValue::Secret),
                RawEnvValue::Env(v) => self.secret_env(&field.key("env"), &v).map(EnvValue::Secret),
            };
            if let Some(value) = value {
                out.push(EnvVar { name, value });
            }
        }
        out
    }

    pub(super) fn secret_file(&mut self, field: &FieldPath, file: &str) -> Option<Secret> {
        if file.is_empty() {
            self.problem(
                field,
                Target::Value,
                "is empty; expected the path of a secret file",
            );
            return None;
        }
        let path = self.resolve(file);
        secrets::from_file(&path)
            .map_err(|e| self.problem(field, Target::Value, e))
            .ok()
    }

    pub(super) fn secret_env(&mut self, field: &FieldPath, var: &str) -> Option<Secret> {
        if let Err(e) = values::env_name(var) {
            self.problem(field, Target::Value, e);
            return None;
        }
        secrets::from_env(var, self.env)
            .map_err(|e| self.problem(field, Target::Value, e))
            .ok()
    }

    /// A duration that must be positive; `default` when absent.
    pub(super) fn duration(
        &mut self,
        field: &FieldPath,
        raw: Option<RawDuration>,
        default: Duration,
    ) -> Duration {
        match raw {
            None => default,
            Some(RawDuration(d)) if d.is_zero() => {
                self.problem(
                    field,
                    Target::Value,
                    "is zero; expected a duration greater than 0 like 10s or 500ms",
                );
                default
            }
            Some(RawDuration(d)) => d,
        }
    }
}
