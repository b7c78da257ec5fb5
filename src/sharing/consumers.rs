//! Consumers (agencies, publishers, the province, the managing office) and their tokens.
//!
//! A token is 256 random bits, shown once. The config holds only its SHA-256
//! (`token_sha256`) or names an environment variable holding it (`token_env`); when that
//! variable is unset, `serve` makes a random token and prints it once, so a demo works and
//! no known secret ever ships. Tokens are compared by hash, in constant time.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The managing office: approves shares, reads everything and the audit log.
    Admin,
    /// A sector department that publishes its datasets.
    Publisher,
    /// A state agency that reads shared data.
    Agency,
    /// The provincial IOC.
    Province,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Publisher => "publisher",
            Role::Agency => "agency",
            Role::Province => "province",
        }
    }
}

/// The agency's officer in charge of data sharing, shown in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FocalOfficer {
    pub name: String,
    pub position: String,
    pub phone: String,
    pub email: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ConsumerConfig {
    pub id: String,
    pub agency: String,
    pub role: Role,
    /// Hex SHA-256 of the token (`iochub token new` prints it).
    #[serde(default)]
    pub token_sha256: Option<String>,
    /// Name of the environment variable holding the token.
    #[serde(default)]
    pub token_env: Option<String>,
    #[serde(default)]
    pub focal_officer: Option<FocalOfficer>,
}

#[derive(Debug, Clone)]
pub struct Consumer {
    pub id: String,
    pub agency: String,
    pub role: Role,
    pub focal_officer: Option<FocalOfficer>,
    token_hash: [u8; 32],
}

/// A token made at start because its environment variable was unset.
#[derive(Debug, Clone)]
pub struct GeneratedToken {
    pub consumer: String,
    pub env: String,
    pub token: String,
}

pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// 256 random bits as 64 hex characters.
pub fn new_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}

#[derive(Debug, Clone, Default)]
pub struct Consumers {
    list: Vec<Consumer>,
}

impl Consumers {
    /// Builds the consumer list; the problems are reported by `iochub check` with their line.
    pub fn from_config(
        configs: &[ConsumerConfig],
        generated: &mut Vec<GeneratedToken>,
    ) -> Result<Self, Vec<(usize, String)>> {
        let mut problems = Vec::new();
        let mut list = Vec::new();
        for (i, c) in configs.iter().enumerate() {
            if list.iter().any(|x: &Consumer| x.id == c.id) {
                problems.push((i, format!("consumer id {:?} is used twice", c.id)));
                continue;
            }
            let hash = match (&c.token_sha256, &c.token_env) {
                (Some(hex_hash), None) => match hex::decode(hex_hash.trim()) {
                    Ok(bytes) if bytes.len() == 32 => {
                        let mut h = [0u8; 32];
                        h.copy_from_slice(&bytes);
                        h
                    }
                    _ => {
                        problems.push((
                            i,
                            format!(
                                "consumer {:?}: token_sha256 must be 64 hex characters",
                                c.id
                            ),
                        ));
                        continue;
                    }
                },
                (None, Some(env)) => match std::env::var(env) {
                    Ok(token) if !token.is_empty() => hash_token(&token),
                    _ => match new_token() {
                        Ok(token) => {
                            let h = hash_token(&token);
                            generated.push(GeneratedToken {
                                consumer: c.id.clone(),
                                env: env.clone(),
                                token,
                            });
                            h
                        }
                        Err(e) => {
                            problems.push((
                                i,
                                format!("consumer {:?}: no random source for a token: {e}", c.id),
                            ));
                            continue;
                        }
                    },
                },
                _ => {
                    problems.push((
                        i,
                        format!(
                            "consumer {:?}: give exactly one of token_sha256 or token_env",
                            c.id
                        ),
                    ));
                    continue;
                }
            };
            list.push(Consumer {
                id: c.id.clone(),
                agency: c.agency.clone(),
                role: c.role,
                focal_officer: c.focal_officer.clone(),
                token_hash: hash,
            });
        }
        if problems.is_empty() {
            Ok(Consumers { list })
        } else {
            Err(problems)
        }
    }

    /// The consumer holding `token`. Every stored hash is compared, in constant time, so the
    /// answer's timing says nothing about which (or whether a) consumer matched.
    pub fn authenticate(&self, token: &str) -> Option<&Consumer> {
        let presented = hash_token(token);
        let mut found = None;
        for c in &self.list {
            if bool::from(c.token_hash.ct_eq(&presented)) {
                found = Some(c);
            }
        }
        found
    }

    pub fn get(&self, id: &str) -> Option<&Consumer> {
        self.list.iter().find(|c| c.id == id)
    }

    pub fn all(&self) -> &[Consumer] {
        &self.list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(id: &str, role: Role, hash: Option<String>, env: Option<&str>) -> ConsumerConfig {
        ConsumerConfig {
            id: id.into(),
            agency: "Sở".into(),
            role,
            token_sha256: hash,
            token_env: env.map(str::to_string),
            focal_officer: None,
        }
    }

    #[test]
    fn tokens_are_matched_by_hash_and_generated_when_unset() {
        let token = new_token().unwrap();
        assert_eq!(token.len(), 64);
        let hash = hex::encode(hash_token(&token));
        let mut generated = Vec::new();
        let consumers = Consumers::from_config(
            &[
                config("a", Role::Agency, Some(hash), None),
                config(
                    "p",
                    Role::Province,
                    None,
                    Some("IOCHUB_TEST_UNSET_TOKEN_VAR"),
                ),
            ],
            &mut generated,
        )
        .unwrap();
        assert_eq!(
            consumers.authenticate(&token).map(|c| c.id.as_str()),
            Some("a")
        );
        assert!(consumers.authenticate("wrong").is_none());
        assert_eq!(generated.len(), 1);
        assert_eq!(
            consumers
                .authenticate(&generated[0].token)
                .map(|c| c.id.as_str()),
            Some("p")
        );
    }

    #[test]
    fn bad_consumer_configs_are_reported() {
        let mut generated = Vec::new();
        let problems = Consumers::from_config(
            &[
                config("a", Role::Agency, Some("abc".into()), None),
                config("b", Role::Agency, None, None),
                config("c", Role::Agency, Some("00".repeat(32)), None),
                config("c", Role::Agency, Some("00".repeat(32)), None),
            ],
            &mut generated,
        )
        .unwrap_err();
        let indexes: Vec<usize> = problems.iter().map(|p| p.0).collect();
        assert_eq!(indexes, [0, 1, 3]);
    }
}
