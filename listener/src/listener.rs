//! The serving state of one listener: which certificate its next handshake gets.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwapOption;
use cert_bundle::{CertificateBundle, Thumbprint};
use rustls::sign::CertifiedKey;

use crate::error::Rejection;
use crate::hostname::normalize;
use crate::validate::{validate, ValidatedCertificate};

/// One listener's certificate slot, shared between the code that installs certificates and the
/// [`SniResolver`](crate::SniResolver) that serves them.
///
/// Installing is one atomic pointer swap: a handshake under way keeps the certificate it
/// loaded, open connections are not touched (their keys were agreed at their handshake), and the
/// next handshake sees the new certificate. Readers never take a lock.
pub struct ListenerCertificate {
    /// The listener's configured name, for logs and errors.
    name: String,
    /// Lowercased, without trailing dots, without duplicates, in configured order. SNI chooses
    /// this listener for these names; an empty list makes it the catch-all of its address.
    hostnames: Vec<String>,
    /// The certificate served now, `None` until the first install (the listener is not ready).
    current: ArcSwapOption<ValidatedCertificate>,
    /// False while the listener is taken out of service (the `disable-listener` failure policy):
    /// handshakes fail, but the certificate is kept so that re-enabling needs no new install.
    serving: AtomicBool,
}

impl ListenerCertificate {
    /// A listener slot with no certificate yet.
    ///
    /// Hostnames are compared without regard to ASCII case or a trailing dot; `*.example.com`
    /// claims every name one label below `example.com`.
    pub fn new<S: AsRef<str>>(
        name: impl Into<String>,
        hostnames: impl IntoIterator<Item = S>,
    ) -> Self {
        let mut normalized: Vec<String> = Vec::new();
        for hostname in hostnames {
            let hostname = normalize(hostname.as_ref());
            if !normalized.contains(&hostname) {
                normalized.push(hostname);
            }
        }
        Self {
            name: name.into(),
            hostnames: normalized,
            current: ArcSwapOption::empty(),
            serving: AtomicBool::new(true),
        }
    }

    /// The listener's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The hostnames this listener serves (normalized), empty for a catch-all listener. Pass them
    /// to [`validate`] for a certificate meant for this listener.
    #[must_use]
    pub fn hostnames(&self) -> &[String] {
        &self.hostnames
    }

    /// The certificate being served, if any.
    #[must_use]
    pub fn current(&self) -> Option<Arc<ValidatedCertificate>> {
        self.current.load_full()
    }

    /// Serves `certificate` from the next handshake on, and returns the thumbprint of the one it
    /// replaces.
    ///
    /// The certificate should have been validated against [`hostnames`](Self::hostnames);
    /// [`validate_and_install`](Self::validate_and_install) does both.
    pub fn install(&self, certificate: ValidatedCertificate) -> Option<Thumbprint> {
        let thumbprint = certificate.thumbprint();
        let previous = self
            .current
            .swap(Some(Arc::new(certificate)))
            .map(|previous| previous.thumbprint());
        tracing::debug!(
            listener = %self.name,
            %thumbprint,
            previous = ?previous,
            "certificate installed"
        );
        previous
    }

    /// Validates `bundle` against this listener's hostnames at `now` and, if it passes, installs
    /// it, returning the previous thumbprint. On rejection the current certificate stays.
    pub fn validate_and_install(
        &self,
        bundle: &CertificateBundle,
        now: SystemTime,
    ) -> Result<Option<Thumbprint>, Rejection> {
        let certificate = validate(bundle, &self.hostnames, now)?;
        Ok(self.install(certificate))
    }

    /// Stops serving: handshakes for this listener fail from now on. Returns the thumbprint of
    /// the certificate removed.
    pub fn clear(&self) -> Option<Thumbprint> {
        self.current
            .swap(None)
            .map(|previous| previous.thumbprint())
    }

    /// The hot path: the key for one handshake, without allocating.
    /// Takes the listener out of service (`false`) or puts it back (`true`); returns whether it
    /// was serving before. While out of service, handshakes for it fail and nothing else changes.
    pub fn set_serving(&self, serving: bool) -> bool {
        self.serving.swap(serving, Ordering::AcqRel)
    }

    /// Whether the listener is in service (it may still have no certificate).
    #[must_use]
    pub fn is_serving(&self) -> bool {
        self.serving.load(Ordering::Acquire)
    }

    pub(crate) fn certified_key(&self) -> Option<Arc<CertifiedKey>> {
        if !self.is_serving() {
            return None;
        }
        self.current
            .load()
            .as_ref()
            .map(|current| Arc::clone(current.certified_key()))
    }
}

impl fmt::Debug for ListenerCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let current = self.current.load();
        f.debug_struct("ListenerCertificate")
            .field("name", &self.name)
            .field("hostnames", &self.hostnames)
            .field("serving", &self.is_serving())
            .field(
                "current",
                &current
                    .as_ref()
                    .map(|c| format!("{} ({})", c.thumbprint(), c.subject())),
            )
            .finish()
    }
}
