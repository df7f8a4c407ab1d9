//! The SOPS decryptor against what the real `sops` 3.11.0 writes with keys
//! from the real `age-keygen`: it opens what sops opens, refuses what sops
//! refuses (other key, tampered value, broken MAC), and opens kustomize's
//! re-ordered output of an encrypted file, which sops itself cannot. No
//! plaintext in any error. Needs neither LocalStack nor the API server.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use driftless::decrypt::{decrypt, is_encrypted, DecryptError, Identities, SopsFile};
use serde_json::Value;

use crate::support::tool;

/// Every plaintext secret the cases use: none may appear in an error.
const SECRETS: [&str; 4] = ["hunter2", "5432", "s3cr3t-t0ken", "c2VjcmV0LXRva2Vu"];

const SECRET: &str = "apiVersion: v1
kind: Secret
metadata:
  name: db
  namespace: app
type: Opaque
stringData:
  password: hunter2
  port: \"5432\"
data:
  token: c2VjcmV0LXRva2Vu
# a comment, encrypted by sops and left out of the MAC
extra:
  n: 42
  f: 1.5
  b: true
  none: null
  list:
    - one
    - two: three
";

/// A temp dir with an age key made by the real age-keygen; HOME for sops.
pub(crate) struct Sops {
    dir: tempfile::TempDir,
    pub(crate) key_file: PathBuf,
    recipient: String,
}

impl Sops {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("keys.txt");
        let out = Command::new(tool("age-keygen"))
            .arg("-o")
            .arg(&key_file)
            .output()
            .unwrap();
        assert!(out.status.success(), "age-keygen: {out:?}");
        let text = std::fs::read_to_string(&key_file).unwrap();
        let recipient = text
            .lines()
            .find_map(|l| l.strip_prefix("# public key: "))
            .unwrap()
            .to_string();
        Self {
            dir,
            key_file,
            recipient,
        }
    }

    pub(crate) fn key_text(&self) -> String {
        std::fs::read_to_string(&self.key_file).unwrap()
    }

    fn ids(&self) -> Identities {
        Identities::from_text("SOPS_AGE_KEY_FILE", &self.key_text()).unwrap()
    }

    fn sops(&self) -> Command {
        let mut c = Command::new(tool("sops"));
        c.current_dir(self.dir.path())
            .env("HOME", self.dir.path())
            .env("SOPS_AGE_KEY_FILE", &self.key_file)
            .env_remove("SOPS_AGE_KEY")
            .env_remove("SOPS_AGE_RECIPIENTS")
            .arg("--disable-version-check");
        c
    }

    /// `sops --encrypt` of `plain` written as `name`; extra flags after
    /// `--encrypt` (none: `.sops.yaml` in the dir, or `--age` is added).
    pub(crate) fn encrypt(&self, name: &str, plain: &str, flags: &[&str]) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, plain).unwrap();
        let mut c = self.sops();
        c.arg("--encrypt");
        if !self.dir.path().join(".sops.yaml").exists() {
            c.args(["--age", &self.recipient]);
        }
        let out = c.args(flags).arg(&path).output().unwrap();
        assert!(out.status.success(), "sops --encrypt: {out:?}");
        std::fs::remove_file(&path).unwrap();
        String::from_utf8(out.stdout).unwrap()
    }

    /// Whether the real `sops --decrypt` opens `text` (as YAML or JSON).
    fn sops_opens(&self, text: &str, kind: &str) -> (bool, String) {
        let path = self.dir.path().join(format!("check.{kind}"));
        std::fs::write(&path, text).unwrap();
        let out = self.sops().arg("--decrypt").arg(&path).output().unwrap();
        std::fs::remove_file(&path).unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// The objects of a YAML text as driftless reads them (sorted keys).
fn objects(text: &str) -> Vec<Value> {
    driftless::manifests::parse(Path::new("f.yaml"), text)
        .unwrap()
        .into_iter()
        .map(|m| m.value)
        .collect()
}

fn only(text: &str) -> Value {
    let mut all = objects(text);
    assert_eq!(all.len(), 1);
    all.remove(0)
}

fn no_plaintext(err: &DecryptError) -> String {
    let text = err.to_string();
    for s in SECRETS {
        assert!(!text.contains(s), "plaintext {s} in the error: {text}");
    }
    assert!(!format!("{err:?}").contains("hunter2"));
    text
}

fn decrypt_err(value: &Value, text: &str, ids: &Identities) -> String {
    no_plaintext(&decrypt(value, text, ids).unwrap_err())
}

/// `text` with the first `ENC[...]` after `key:` altered in its data.
fn tamper_value(text: &str, key: &str) -> String {
    let at = text.find(&format!("{key}: ENC[AES256_GCM,data:")).unwrap() + key.len() + 22;
    let mut bytes = text.as_bytes().to_vec();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

#[test]
fn a_whole_encrypted_secret_decrypts_to_the_original() {
    let s = Sops::new();
    let enc = s.encrypt("secret.yaml", SECRET, &[]);
    for secret in SECRETS {
        assert!(!enc.contains(secret), "{secret} in {enc}");
    }
    assert!(s.sops_opens(&enc, "yaml").0);
    let value = only(&enc);
    assert!(is_encrypted(&value));
    assert!(!is_encrypted(&only(SECRET)));
    // driftless's value has sorted keys; the MAC is checked on the text.
    let plain = decrypt(&value, &enc, &s.ids()).unwrap();
    assert_eq!(plain, only(SECRET));
}

#[test]
fn encrypted_regex_from_a_creation_rule() {
    let s = Sops::new();
    let rule = format!(
        "creation_rules:\n  - path_regex: .*\\.yaml$\n    encrypted_regex: ^(data|stringData)$\n    age: {}\n",
        s.recipient
    );
    std::fs::write(s.dir.path().join(".sops.yaml"), rule).unwrap();
    let enc = s.encrypt("secret.yaml", SECRET, &[]);
    assert!(
        enc.contains("encrypted_regex: ^(data|stringData)$"),
        "{enc}"
    );
    assert!(enc.contains("  name: db\n"), "metadata stays plain: {enc}");
    assert!(!enc.contains("hunter2"));
    let plain = decrypt(&only(&enc), &enc, &s.ids()).unwrap();
    assert_eq!(plain, only(SECRET));

    // A changed plain value is covered by the MAC.
    let renamed = enc.replace("  name: db\n", "  name: other\n");
    assert!(!s.sops_opens(&renamed, "yaml").0);
    let err = decrypt_err(&only(&renamed), &renamed, &s.ids());
    assert_eq!(err, "MAC mismatch: the file was changed after encryption");
}

#[test]
fn mac_only_encrypted_leaves_plain_values_out_of_the_mac() {
    let s = Sops::new();
    let flags = [
        "--encrypted-regex",
        "^(data|stringData)$",
        "--mac-only-encrypted",
    ];
    let enc = s.encrypt("secret.yaml", SECRET, &flags);
    assert!(enc.contains("mac_only_encrypted: true"), "{enc}");
    let renamed = enc.replace("  name: db\n", "  name: other\n");
    assert!(s.sops_opens(&renamed, "yaml").0, "sops accepts it");
    let plain = decrypt(&only(&renamed), &renamed, &s.ids()).unwrap();
    assert_eq!(plain["metadata"]["name"], "other");
    assert_eq!(plain["stringData"]["password"], "hunter2");
    let tampered = tamper_value(&enc, "password");
    let err = decrypt_err(&only(&tampered), &tampered, &s.ids());
    assert_eq!(
        err,
        "value at stringData.password: authentication failed (tampered?)"
    );
}

#[test]
fn json_files_decrypt() {
    let s = Sops::new();
    let plain = r#"{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
 "stringData": {"password": "hunter2", "port": 5432, "ratio": 0.25, "on": true}}"#;
    let enc = s.encrypt("secret.json", plain, &["--input-type", "json"]);
    assert!(
        enc.contains("type:float"),
        "sops 3.11 types JSON numbers as floats: {enc}"
    );
    assert!(s.sops_opens(&enc, "json").0);
    let value: Value = serde_json::from_str(&enc).unwrap();
    let out = decrypt(&value, &enc, &s.ids()).unwrap();
    assert_eq!(out, serde_json::from_str::<Value>(plain).unwrap());
    assert!(out["stringData"]["port"].is_i64(), "{out}");
}

#[test]
fn a_file_for_another_key_names_its_recipients() {
    let s = Sops::new();
    let other = Sops::new();
    let enc = other.encrypt("secret.yaml", SECRET, &[]);
    let err = decrypt_err(&only(&enc), &enc, &s.ids());
    assert_eq!(
        err,
        format!(
            "no age identity in SOPS_AGE_KEY_FILE matches the recipients {}",
            other.recipient
        )
    );
}

#[test]
fn misnamed_secret_keys_are_named() {
    let s = Sops::new();
    let enc = s.encrypt("secret.yaml", SECRET, &[]);
    // The right key, under the wrong name: refused, the suffix named.
    let misnamed = BTreeMap::from([("age.key".to_string(), s.key_text().into_bytes())]);
    let err = Identities::from_secret_data("flux-system/sops-age", &misnamed).unwrap_err();
    assert_eq!(
        err,
        "key age.key of secret flux-system/sops-age holds an age identity but is not named *.agekey"
    );
    // With another, well-named key beside it, the decryption error says so.
    let other = Sops::new();
    let both = BTreeMap::from([
        ("age.key".to_string(), s.key_text().into_bytes()),
        ("other.agekey".to_string(), other.key_text().into_bytes()),
    ]);
    let ids = Identities::from_secret_data("flux-system/sops-age", &both).unwrap();
    let err = decrypt_err(&only(&enc), &enc, &ids);
    assert_eq!(
        err,
        format!(
            "no age identity in secret flux-system/sops-age matches the recipients {} (its key age.key is not named *.agekey)",
            s.recipient
        )
    );
    let good = BTreeMap::from([("x.agekey".to_string(), s.key_text().into_bytes())]);
    let ids = Identities::from_secret_data("flux-system/sops-age", &good).unwrap();
    assert!(decrypt(&only(&enc), &enc, &ids).is_ok());
}

#[test]
fn a_tampered_value_is_refused() {
    let s = Sops::new();
    let enc = s.encrypt("secret.yaml", SECRET, &[]);
    let tampered = tamper_value(&enc, "password");
    assert!(!s.sops_opens(&tampered, "yaml").0);
    let err = decrypt_err(&only(&tampered), &tampered, &s.ids());
    assert_eq!(
        err,
        "value at stringData.password: authentication failed (tampered?)"
    );

    // A value moved to another key fails its key path (the additional data).
    let value = only(&enc);
    let token = value["data"]["token"].as_str().unwrap();
    let password = value["stringData"]["password"].as_str().unwrap();
    let swapped = enc
        .replace(password, "\u{0}")
        .replace(token, password)
        .replace('\u{0}', token);
    let err = decrypt_err(&only(&swapped), &swapped, &s.ids());
    assert!(err.ends_with("authentication failed (tampered?)"), "{err}");
}

#[test]
fn a_broken_mac_is_refused() {
    let s = Sops::new();
    let enc = s.encrypt("secret.yaml", SECRET, &[]);
    let broken = tamper_value(&enc, "mac");
    let (opens, why) = s.sops_opens(&broken, "yaml");
    assert!(!opens);
    assert!(why.contains("MAC"), "{why}");
    let err = decrypt_err(&only(&broken), &broken, &s.ids());
    assert_eq!(err, "MAC mismatch: the file was changed after encryption");

    // Changing lastmodified (the MAC's additional data) breaks it too.
    let at = enc.find("lastmodified: \"").unwrap() + 15;
    let moved = format!("{}2001{}", &enc[..at], &enc[at + 4..]);
    assert!(!s.sops_opens(&moved, "yaml").0);
    let err = decrypt_err(&only(&moved), &moved, &s.ids());
    assert_eq!(err, "MAC mismatch: the file was changed after encryption");
}

#[test]
fn files_encrypted_for_other_key_types_are_unsupported() {
    let s = Sops::new();
    let enc = s
        .encrypt("secret.yaml", SECRET, &[])
        .replace("\n    age:\n", "\n    pgp:\n");
    let err = decrypt_err(&only(&enc), &enc, &s.ids());
    assert_eq!(err, "unsupported: this file is encrypted with pgp only");
}

/// The documents of a multi-document file share one data key and one MAC
/// (sops copies the `sops` block into each): a document alone cannot be
/// verified, a dropped document breaks the MAC.
#[test]
fn a_multi_document_file_is_one_sops_tree() {
    let s = Sops::new();
    let second = SECRET
        .replace("name: db", "name: cache")
        .replace("hunter2", "s3cr3t-t0ken");
    let enc = s.encrypt("two.yaml", &format!("{SECRET}---\n{second}"), &[]);
    let docs = objects(&enc);
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0]["sops"]["mac"], docs[1]["sops"]["mac"]);
    let file = SopsFile::open(&enc, &s.ids()).unwrap();
    assert_eq!(file.decrypt(&docs[1]).unwrap(), only(&second));
    assert_eq!(file.decrypt(&docs[0]).unwrap(), only(SECRET));

    let first_only = &enc[..enc.find("\n---\n").unwrap() + 1];
    assert!(!s.sops_opens(first_only, "yaml").0);
    let err = decrypt_err(&docs[0], first_only, &s.ids());
    assert_eq!(err, "MAC mismatch: the file was changed after encryption");
}

fn kustomize_build(dir: &Path) -> String {
    let out = Command::new(tool("kustomize"))
        .arg("build")
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "kustomize build: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// kustomize re-orders keys and sets metadata: the real sops refuses its
/// output (MAC mismatch), driftless opens it against the source file's text.
#[test]
fn kustomize_output_decrypts_against_its_source_file() {
    let s = Sops::new();
    let flags = ["--encrypted-regex", "^(data|stringData)$"];
    let enc = s.encrypt("secret.yaml", SECRET, &flags);
    let k = s.dir.path().join("k");
    std::fs::create_dir(&k).unwrap();
    std::fs::write(k.join("secret.yaml"), &enc).unwrap();
    std::fs::write(
        k.join("kustomization.yaml"),
        "namespace: prod\nlabels:\n- pairs: {team: a}\nresources:\n- secret.yaml\n",
    )
    .unwrap();
    let built = kustomize_build(&k);
    assert!(
        built.starts_with("apiVersion: v1\ndata:\n"),
        "sorted: {built}"
    );
    let (opens, why) = s.sops_opens(&built, "yaml");
    assert!(!opens && why.contains("MAC mismatch"), "{why}");

    let rendered = only(&built);
    let out = decrypt(&rendered, &enc, &s.ids()).unwrap();
    let mut expected = only(SECRET);
    expected["metadata"]["namespace"] = "prod".into();
    expected["metadata"]["labels"] = serde_json::json!({"team": "a"});
    assert_eq!(out, expected);

    // Against another file, or with an encrypted value dropped: refused.
    let other = s.encrypt("other.yaml", SECRET, &flags);
    let err = decrypt_err(&rendered, &other, &s.ids());
    assert_eq!(err, "the object's sops metadata is not its source file's");
    let mut dropped = rendered.clone();
    dropped["data"].as_object_mut().unwrap().remove("token");
    let err = decrypt_err(&dropped, &enc, &s.ids());
    assert_eq!(
        err,
        "the encrypted value at data.token of the source file is missing from the rendered object"
    );
}

/// A kustomize patch that puts a plain value among the encrypted ones.
#[test]
fn a_plain_value_patched_into_an_encrypted_field_is_refused() {
    let s = Sops::new();
    let flags = ["--encrypted-regex", "^(data|stringData)$"];
    let enc = s.encrypt("secret.yaml", SECRET, &flags);
    let k = s.dir.path().join("k");
    std::fs::create_dir(&k).unwrap();
    std::fs::write(k.join("secret.yaml"), &enc).unwrap();
    let patch = "patches:\n- patch: |\n    apiVersion: v1\n    kind: Secret\n    metadata: {name: db, namespace: app}\n    stringData: {injected: plain}\n";
    std::fs::write(
        k.join("kustomization.yaml"),
        format!("resources:\n- secret.yaml\n{patch}"),
    )
    .unwrap();
    let rendered = only(&kustomize_build(&k));
    assert_eq!(rendered["stringData"]["injected"], "plain");
    let err = decrypt_err(&rendered, &enc, &s.ids());
    assert_eq!(
        err,
        "the value at stringData.injected is not encrypted, but the file's rules say it must be (added by a kustomize patch or transformer?)"
    );
}
