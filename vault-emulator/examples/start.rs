//! Starts an emulator in a temporary directory, imports a self-made certificate and prints how
//! to reach it. `cargo run -p vault-emulator --example start`
use vault_emulator::{Emulator, EmulatorConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let emulator = Emulator::start(EmulatorConfig::new(dir.path()))?;
    let key = rcgen::KeyPair::generate()?;
    let cert =
        rcgen::CertificateParams::new(vec!["demo.localhost".to_owned()])?.self_signed(&key)?;
    let pem = format!("{}{}", key.serialize_pem(), cert.pem());
    let version = emulator.import_certificate("demo", pem.as_bytes(), None)?;
    let info = emulator.info();
    println!("vault:     {}", info.vault_url);
    println!("secret:    {}secrets/demo/{version}", info.vault_url);
    println!("identity:  {}", info.identity_endpoint);
    println!("client_id: {}", info.client_id);
    println!("CA:        {}", info.ca_file.display());
    emulator.stop();
    Ok(())
}
