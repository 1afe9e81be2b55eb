//! Warnings before certificates expire: for each client certificate presented (once per
//! certificate per day), and for the loaded material — the server certificate, each
//! client CA, each CRL's `nextUpdate` — at start-up, daily and after each reload (see
//! [`Reloader::expiry_warning`](crate::reload::Reloader::expiry_warning)); with the
//! [`SOONEST_EXPIRY`](crate::telemetry::SOONEST_EXPIRY) gauge.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::cert::PeerCertificate;

/// The default warning window: 14 days.
pub const DEFAULT_EXPIRY_WARNING: Duration = Duration::from_secs(14 * 86_400);

/// Certificates remembered as warned about today, at most.
const REMEMBERED: usize = 10_000;

const DAY: i64 = 86_400;

pub(crate) fn unix(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// Formats `time` as the logs write times: `2030-01-10 00:00:00 UTC`.
pub fn format_utc(time: SystemTime) -> String {
    crate::tls::utc(unix(time))
}

/// Whole days from `now` to `not_after`, rounded down (negative once past).
fn days_left(not_after: i64, now: i64) -> i64 {
    (not_after - now).div_euclid(DAY)
}

/// Warns about client certificates close to their end, each at most once a day.
#[derive(Debug)]
pub(crate) struct ClientExpiryWarnings {
    window: i64,
    /// Thumbprint → the day (Unix days) it was last warned about.
    warned: Mutex<HashMap<[u8; 32], i64>>,
}

impl ClientExpiryWarnings {
    pub(crate) fn new(window: Duration) -> Self {
        Self {
            window: i64::try_from(window.as_secs()).unwrap_or(i64::MAX),
            warned: Mutex::new(HashMap::new()),
        }
    }

    /// Warns when `certificate` ends within the window, unless it did today.
    pub(crate) fn check(&self, certificate: &PeerCertificate, source: &'static str) {
        self.check_at(certificate, source, unix(SystemTime::now()));
    }

    /// [`check`](Self::check) at `now`; whether it warned.
    pub(crate) fn check_at(
        &self,
        certificate: &PeerCertificate,
        source: &'static str,
        now: i64,
    ) -> bool {
        // A certificate only hashed by a proxy carries no validity.
        if certificate.der().is_none() {
            return false;
        }
        let not_after = unix(certificate.not_after());
        if not_after.saturating_sub(now) > self.window || not_after < now {
            return false;
        }
        let today = now.div_euclid(DAY);
        {
            let mut warned = self
                .warned
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if warned.get(certificate.thumbprint_bytes()) == Some(&today) {
                return false;
            }
            if warned.len() >= REMEMBERED {
                warned.retain(|_, day| *day == today);
                if warned.len() >= REMEMBERED {
                    warned.clear();
                }
            }
            warned.insert(*certificate.thumbprint_bytes(), today);
        }
        let days = days_left(not_after, now);
        tracing::warn!(
            source,
            subject = certificate.subject(),
            thumbprint = certificate.thumbprint(),
            days_left = days,
            "client certificate expires in {days} day{}: issue the client a new one",
            if days == 1 { "" } else { "s" }
        );
        true
    }
}

/// One expiring thing of the loaded material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Expiring {
    /// `server_certificate`, `client_ca` or `crl_next_update`.
    pub(crate) kind: &'static str,
    /// Its subject (a CRL: its issuer).
    pub(crate) name: String,
    /// Its thumbprint (a CRL: none).
    pub(crate) thumbprint: Option<String>,
    /// Unix seconds.
    pub(crate) at: i64,
}

/// Warns about each item ending within `window` of `now`, and sets the gauges; how many
/// it warned about.
pub(crate) fn report(items: &[Expiring], window: Duration, now: i64) -> usize {
    let window = i64::try_from(window.as_secs()).unwrap_or(i64::MAX);
    let mut warned = 0;
    let mut soonest: HashMap<&'static str, i64> = HashMap::new();
    for item in items {
        for kind in [item.kind, "any"] {
            let entry = soonest.entry(kind).or_insert(item.at);
            *entry = (*entry).min(item.at);
        }
        if item.at.saturating_sub(now) > window {
            continue;
        }
        warned += 1;
        let days = days_left(item.at, now);
        let thumbprint = item.thumbprint.as_deref().unwrap_or("-");
        let what = match item.kind {
            "server_certificate" => "server certificate",
            "client_ca" => "client CA certificate",
            _ => "CRL (nextUpdate)",
        };
        if item.at < now {
            tracing::warn!(kind = item.kind, subject = %item.name, thumbprint, days_left = days, "{what} of {} has expired", item.name);
        } else {
            tracing::warn!(kind = item.kind, subject = %item.name, thumbprint, days_left = days, "{what} of {} expires in {days} day{}", item.name, if days == 1 { "" } else { "s" });
        }
    }
    for (kind, at) in soonest {
        crate::telemetry::soonest_expiry(kind, at);
    }
    warned
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate that ends at midnight UTC, 2030-01-10.
    fn ending_2030_01_10() -> PeerCertificate {
        let mut params = rcgen::CertificateParams::new(vec!["c.example".into()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2029, 1, 1);
        params.not_after = rcgen::date_time_ymd(2030, 1, 10);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        PeerCertificate::from_der(cert.der()).unwrap()
    }

    #[test]
    fn a_client_certificate_is_warned_about_once_a_day_within_the_window() {
        let certificate = ending_2030_01_10();
        let end = unix(certificate.not_after());
        let warnings = ClientExpiryWarnings::new(DEFAULT_EXPIRY_WARNING);
        let five_days_before = end - 5 * DAY;
        assert!(warnings.check_at(&certificate, "tls", five_days_before));
        assert!(!warnings.check_at(&certificate, "tls", five_days_before + 60));
        assert!(warnings.check_at(&certificate, "tls", five_days_before + DAY));
        // Outside the window, and once it has ended (the handshake refuses it then).
        let fresh = ClientExpiryWarnings::new(DEFAULT_EXPIRY_WARNING);
        assert!(!fresh.check_at(&certificate, "tls", end - 15 * DAY));
        assert!(fresh.check_at(&certificate, "tls", end - 14 * DAY));
        let fresh = ClientExpiryWarnings::new(DEFAULT_EXPIRY_WARNING);
        assert!(!fresh.check_at(&certificate, "tls", end + 1));
        assert!(fresh.check_at(&certificate, "tls", end));
    }

    #[test]
    fn the_memory_of_warnings_is_bounded() {
        let certificate = ending_2030_01_10();
        let now = unix(certificate.not_after()) - DAY;
        let warnings = ClientExpiryWarnings::new(DEFAULT_EXPIRY_WARNING);
        {
            let mut warned = warnings.warned.lock().unwrap();
            for i in 0..REMEMBERED {
                let mut thumbprint = [0u8; 32];
                thumbprint[..8].copy_from_slice(&(i as u64).to_le_bytes());
                warned.insert(thumbprint, now.div_euclid(DAY));
            }
        }
        assert!(warnings.check_at(&certificate, "tls", now));
        assert!(warnings.warned.lock().unwrap().len() <= REMEMBERED);
        assert!(!warnings.check_at(&certificate, "tls", now));
    }

    #[test]
    fn days_round_down_and_go_negative() {
        assert_eq!(days_left(10 * DAY, 0), 10);
        assert_eq!(days_left(10 * DAY - 1, 0), 9);
        assert_eq!(days_left(0, 1), -1);
    }

    #[test]
    fn only_what_ends_within_the_window_is_reported() {
        let item = |at| Expiring {
            kind: "client_ca",
            name: "CN=CA".into(),
            thumbprint: None,
            at,
        };
        let window = Duration::from_secs(14 * 86_400);
        let now = 1_000_000;
        assert_eq!(report(&[item(now + 15 * DAY)], window, now), 0);
        assert_eq!(report(&[item(now + 14 * DAY)], window, now), 1);
        assert_eq!(
            report(&[item(now - DAY), item(now + 30 * DAY)], window, now),
            1
        );
    }
}
