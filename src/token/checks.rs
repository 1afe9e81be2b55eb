//! What every verifier holds a token's claims to, whichever way it read them (a JWT's
//! payload, an introspection answer): `iss`, `aud`, `exp` and `nbf`. And a JSON reader
//! that refuses objects with a member named twice.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::AuthReason;

/// Why claims are refused: the reason and the description the client is told.
pub(crate) type Refusal = (AuthReason, &'static str);

/// The `iss`, `aud`, `exp` and `nbf` rules of one verifier.
#[derive(Debug, Clone)]
pub(crate) struct ClaimChecks {
    /// The `iss` the claims must carry, exactly.
    pub(crate) issuer: String,
    /// The `aud` (or one of the `aud`s) the claims must carry.
    pub(crate) audience: String,
    /// Clock skew allowed on `exp` and `nbf`.
    pub(crate) leeway: Duration,
    /// Whether `exp` must be present (a JWT's must; RFC 7662 makes it optional).
    pub(crate) require_exp: bool,
    /// Whether `aud` must be present.
    pub(crate) require_aud: bool,
}

impl ClaimChecks {
    /// Checks `claims` at `now` (seconds since the epoch); on success, `exp` when given.
    pub(crate) fn check(
        &self,
        claims: &Map<String, Value>,
        now: u64,
    ) -> Result<Option<u64>, Refusal> {
        use AuthReason as R;
        if self.require_exp && claims.get("exp").is_none_or(Value::is_null) {
            return Err((R::InvalidClaim, "the token has no exp claim"));
        }
        let Some(iss) = claims.get("iss") else {
            return Err((R::InvalidClaim, "the token has no iss claim"));
        };
        let aud = claims.get("aud");
        if self.require_aud && aud.is_none() {
            return Err((R::InvalidClaim, "the token has no aud claim"));
        }
        // RFC 7519 NumericDate: seconds, possibly with a fraction, rounded towards the
        // stricter side (an exp down, an nbf up).
        let exp = match claims.get("exp") {
            None | Some(Value::Null) => None,
            Some(exp) => Some(
                numeric_date(exp, false)
                    .ok_or((R::InvalidClaim, "the token's exp is not a number"))?,
            ),
        };
        let nbf = match claims.get("nbf") {
            None | Some(Value::Null) => None,
            Some(nbf) => Some(
                numeric_date(nbf, true)
                    .ok_or((R::InvalidClaim, "the token's nbf is not a number"))?,
            ),
        };
        let leeway = self.leeway.as_secs();
        // Valid while now < exp (RFC 7519 §4.1.4), give or take the leeway.
        if exp.is_some_and(|exp| exp.saturating_add(leeway) <= now) {
            return Err((R::Expired, "the token has expired"));
        }
        if nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
            return Err((R::NotYetValid, "the token is not valid yet (nbf)"));
        }
        if iss.as_str() != Some(self.issuer.as_str()) {
            return Err((R::WrongIssuer, "the token's issuer is not the expected one"));
        }
        let for_us = match aud {
            None => true,
            Some(Value::String(aud)) => *aud == self.audience,
            Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(&self.audience)),
            Some(_) => false,
        };
        if !for_us {
            return Err((R::WrongAudience, "the token is not for this audience"));
        }
        Ok(exp)
    }
}

/// A NumericDate as whole seconds: an integer, or a finite non-negative number below
/// 10^15 rounded down (or up, with `round_up`).
pub(crate) fn numeric_date(value: &Value, round_up: bool) -> Option<u64> {
    value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e15)
            .map(|s| if round_up { s.ceil() } else { s.floor() } as u64)
    })
}

/// Reads a JSON object whose objects, at every depth, name each member once: a member
/// named twice could mean one thing to the issuer and another here (RFC 7515 §5.2, RFC
/// 7519 §4), so such a document is refused rather than read by its last occurrence.
pub(crate) fn object_without_duplicates(json: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice::<Strict>(json) {
        Ok(Strict(Value::Object(object))) => Some(object),
        _ => None,
    }
}

/// A JSON value read by [`object_without_duplicates`]' rules.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("not a JSON number"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            let Strict(value) = map.next_value()?;
            if object.insert(name, value).is_some() {
                return Err(de::Error::custom("a member is named twice"));
            }
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn checks() -> ClaimChecks {
        ClaimChecks {
            issuer: "https://as.example".into(),
            audience: "https://api.example".into(),
            leeway: Duration::from_secs(30),
            require_exp: true,
            require_aud: true,
        }
    }

    const NOW: u64 = 1_000_000;

    fn check(checks: &ClaimChecks, claims: Value) -> Result<Option<u64>, &'static str> {
        checks
            .check(claims.as_object().unwrap(), NOW)
            .map_err(|(_, description)| description)
    }

    fn with(edit: impl Fn(&mut Map<String, Value>)) -> Value {
        let mut claims =
            json!({"iss": "https://as.example", "aud": "https://api.example", "exp": NOW + 60});
        edit(claims.as_object_mut().unwrap());
        claims
    }

    #[test]
    fn exp_and_nbf_hold_to_the_second_with_the_leeway() {
        let c = checks();
        // Expired once now reaches exp + leeway, not a second before.
        assert_eq!(
            check(
                &c,
                with(|m| {
                    m.insert("exp".into(), json!(NOW - 29));
                })
            ),
            Ok(Some(NOW - 29))
        );
        assert_eq!(
            check(
                &c,
                with(|m| {
                    m.insert("exp".into(), json!(NOW - 30));
                })
            ),
            Err("the token has expired")
        );
        // Fractional: exp rounds down, nbf up.
        assert_eq!(
            check(
                &c,
                with(|m| {
                    m.insert("exp".into(), json!((NOW - 30) as f64 + 0.9));
                })
            ),
            Err("the token has expired")
        );
        assert_eq!(
            check(
                &c,
                with(|m| {
                    m.insert("nbf".into(), json!(NOW + 30));
                })
            ),
            Ok(Some(NOW + 60))
        );
        assert_eq!(
            check(
                &c,
                with(|m| {
                    m.insert("nbf".into(), json!(NOW + 31));
                })
            ),
            Err("the token is not valid yet (nbf)")
        );
        assert_eq!(
            check(
                &c,
                with(|m| {
                    m.insert("nbf".into(), json!((NOW + 30) as f64 + 0.1));
                })
            ),
            Err("the token is not valid yet (nbf)")
        );
        // A huge exp does not wrap.
        assert_eq!(
            check(
                &c,
                with(|m| {
                    m.insert("exp".into(), json!(u64::MAX));
                })
            ),
            Ok(Some(u64::MAX))
        );
        // No leeway: exactly now is expired, a second later is not.
        let strict = ClaimChecks {
            leeway: Duration::ZERO,
            ..checks()
        };
        assert_eq!(
            check(
                &strict,
                with(|m| {
                    m.insert("exp".into(), json!(NOW));
                })
            ),
            Err("the token has expired")
        );
        assert_eq!(
            check(
                &strict,
                with(|m| {
                    m.insert("exp".into(), json!(NOW + 1));
                })
            ),
            Ok(Some(NOW + 1))
        );
        assert_eq!(
            check(
                &strict,
                with(|m| {
                    m.insert("nbf".into(), json!(NOW + 1));
                })
            ),
            Err("the token is not valid yet (nbf)")
        );
        assert_eq!(
            check(
                &strict,
                with(|m| {
                    m.insert("nbf".into(), json!(NOW));
                })
            ),
            Ok(Some(NOW + 60))
        );
    }

    #[test]
    fn each_claim_is_required_typed_and_compared() {
        let c = checks();
        assert_eq!(
            check(
                &c,
                with(|m| {
                    m.remove("exp");
                })
            ),
            Err("the token has no exp claim")
        );
        assert_eq!(
            check(
                &c,
                with(|m| {
                    m.insert("exp".into(), Value::Null);
                })
            ),
            Err("the token has no exp claim")
        );
        assert_eq!(
            check(
                &c,
                with(|m| {
                    m.remove("iss");
                })
            ),
            Err("the token has no iss claim")
        );
        assert_eq!(
            check(
                &c,
                with(|m| {
                    m.remove("aud");
                })
            ),
            Err("the token has no aud claim")
        );
        for bad in [json!("tomorrow"), json!(-1), json!(1e15), json!([1])] {
            assert_eq!(
                check(
                    &c,
                    with(|m| {
                        m.insert("exp".into(), bad.clone());
                    })
                ),
                Err("the token's exp is not a number"),
                "{bad}"
            );
            assert_eq!(
                check(
                    &c,
                    with(|m| {
                        m.insert("nbf".into(), bad.clone());
                    })
                ),
                Err("the token's nbf is not a number"),
                "{bad}"
            );
        }
        for iss in [
            json!("https://as.example/"),
            json!("HTTPS://AS.EXAMPLE"),
            json!(["https://as.example"]),
            json!(1),
        ] {
            assert_eq!(
                check(
                    &c,
                    with(|m| {
                        m.insert("iss".into(), iss.clone());
                    })
                ),
                Err("the token's issuer is not the expected one"),
                "{iss}"
            );
        }
        for aud in [
            json!("https://api.example/"),
            json!(["x", "y"]),
            json!([]),
            json!({"aud": "https://api.example"}),
            json!(1),
        ] {
            assert_eq!(
                check(
                    &c,
                    with(|m| {
                        m.insert("aud".into(), aud.clone());
                    })
                ),
                Err("the token is not for this audience"),
                "{aud}"
            );
        }
        assert_eq!(
            check(
                &c,
                with(|m| {
                    m.insert("aud".into(), json!([1, "https://api.example"]));
                })
            ),
            Ok(Some(NOW + 60))
        );
        // What introspection may leave out.
        let lenient = ClaimChecks {
            require_exp: false,
            require_aud: false,
            ..checks()
        };
        assert_eq!(
            check(
                &lenient,
                with(|m| {
                    m.remove("exp");
                    m.remove("aud");
                })
            ),
            Ok(None)
        );
        assert_eq!(
            check(
                &lenient,
                with(|m| {
                    m.remove("iss");
                })
            ),
            Err("the token has no iss claim")
        );
    }

    #[test]
    fn numeric_dates() {
        assert_eq!(numeric_date(&json!(5), false), Some(5));
        assert_eq!(numeric_date(&json!(5.5), false), Some(5));
        assert_eq!(numeric_date(&json!(5.5), true), Some(6));
        assert_eq!(numeric_date(&json!(0.0), true), Some(0));
        assert_eq!(
            numeric_date(&json!(999_999_999_999_999.0), false),
            Some(999_999_999_999_999)
        );
        for bad in [json!(-0.5), json!(-1), json!(1e15), json!("5"), json!(null)] {
            assert_eq!(numeric_date(&bad, false), None, "{bad}");
        }
    }

    #[test]
    fn a_member_named_twice_at_any_depth_is_refused() {
        let read = |s: &str| object_without_duplicates(s.as_bytes());
        assert_eq!(
            read(r#"{"a":1,"b":[true,null,"x",-2,1.5,{"c":{}}]}"#),
            Some(
                json!({"a":1,"b":[true,null,"x",-2,1.5,{"c":{}}]})
                    .as_object()
                    .unwrap()
                    .clone()
            )
        );
        assert_eq!(read(r#"{"a":1,"a":1}"#), None);
        assert_eq!(read(r#"{"cnf":{"x5t#S256":"a","x5t#S256":"b"}}"#), None);
        assert_eq!(read(r#"{"l":[{"k":1,"k":2}]}"#), None);
        assert_eq!(read(r#"[1]"#), None);
        assert_eq!(read(r#""x""#), None);
        assert_eq!(read(r#"{"a":1} x"#), None);
        assert_eq!(read(r#"{"a":1e400}"#), None);
    }
}
