//! The ACME account: restored from the store, or created once (under the store's account lock,
//! so two proxies starting together register one account) and saved 0600. Shared by every
//! name set's renewal loop.

use instant_acme::{Account, AccountCredentials, NewAccount};

use crate::proxy::acme::client::CaClient;
use crate::proxy::acme::store::{Store, StoreError};

/// Why no account could be had.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AccountError {
    #[error("ACME account: {0}")]
    Acme(#[from] instant_acme::Error),
    #[error("stored ACME account is unreadable: {0}")]
    Json(#[from] serde_json::Error),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// The account, fetched on first use.
pub(crate) struct AccountSlot {
    store: Store,
    client: CaClient,
    directory: String,
    email: Option<String>,
    account: tokio::sync::Mutex<Option<Account>>,
}

impl AccountSlot {
    pub(crate) fn new(
        store: Store,
        client: CaClient,
        directory: String,
        email: Option<String>,
    ) -> Self {
        Self {
            store,
            client,
            directory,
            email,
            account: tokio::sync::Mutex::new(None),
        }
    }

    /// The account, restored or registered on first use.
    pub(crate) async fn get(&self) -> Result<Account, AccountError> {
        let mut slot = self.account.lock().await;
        if let Some(account) = slot.as_ref() {
            return Ok(account.clone());
        }
        let _lock = self.store.lock_accounts().await?;
        let builder = Account::builder_with_http(Box::new(self.client.clone()));
        let account = match self.store.read_account(&self.directory)? {
            Some(json) => {
                let credentials: AccountCredentials = serde_json::from_str(&json)?;
                builder.from_credentials(credentials).await?
            }
            None => {
                let contact: Vec<String> =
                    self.email.iter().map(|e| format!("mailto:{e}")).collect();
                let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
                let (account, credentials) = builder
                    .create(
                        &NewAccount {
                            contact: &contact,
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        self.directory.clone(),
                        None,
                    )
                    .await?;
                self.store
                    .write_account(&self.directory, &serde_json::to_string(&credentials)?)?;
                tracing::info!(directory = %self.directory, id = account.id(), "ACME account registered");
                account
            }
        };
        *slot = Some(account.clone());
        Ok(account)
    }

    /// Drops an account the CA does not know (`id`, the one that failed), so the next use
    /// registers a new one; a no-op when another loop already replaced it.
    pub(crate) async fn forget(&self, id: &str) -> Result<(), AccountError> {
        let mut slot = self.account.lock().await;
        if slot.as_ref().is_some_and(|a| a.id() != id) {
            return Ok(());
        }
        *slot = None;
        let _lock = self.store.lock_accounts().await?;
        let stored_id = self
            .store
            .read_account(&self.directory)?
            .and_then(|json| serde_json::from_str::<serde_json::Value>(&json).ok())
            .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_string));
        if stored_id.as_deref() == Some(id) {
            tracing::warn!(directory = %self.directory, id, "the CA does not know the stored ACME account; registering a new one");
            self.store.remove_account(&self.directory)?;
        }
        Ok(())
    }
}
