//! The Key Vault actor: the one `VaultClient` of the process (and through it the one token cache),
//! answering `FetchCertificate`. Fetches run concurrently; the client serialises token refreshes
//! per scope itself.

use std::sync::Arc;

use actix::{Actor, Context, Handler, ResponseFuture};
use vault_client::VaultClient;

use super::messages::FetchCertificate;

pub struct VaultActor {
    client: Arc<VaultClient>,
}

impl VaultActor {
    pub fn new(client: VaultClient) -> VaultActor {
        VaultActor {
            client: Arc::new(client),
        }
    }
}

impl Actor for VaultActor {
    type Context = Context<Self>;
}

impl Handler<FetchCertificate> for VaultActor {
    type Result = ResponseFuture<<FetchCertificate as actix::Message>::Result>;

    fn handle(&mut self, msg: FetchCertificate, _: &mut Self::Context) -> Self::Result {
        let client = self.client.clone();
        Box::pin(async move { client.fetch_certificate(&msg.id).await })
    }
}
