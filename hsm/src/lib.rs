//! A Warden CA key held in a PKCS#11 token (SoftHSM2, YubiHSM 2): the root signs issuers from
//! inside the HSM and its private key never leaves it.
//!
//! - [`HsmConfig`] names the module, the token (by label: SoftHSM assigns random slot ids), the
//!   key label and the user PIN, which comes only from `WARDEN_HSM_PIN` or a PIN file.
//! - [`Hsm::open`] loads the module, finds the token and logs in; [`Hsm::generate_key`] makes an
//!   EC P-256 key pair inside the token (sensitive, never extractable) and [`Hsm::signer`] finds
//!   an existing one.
//! - [`HsmSigner`] implements core's [`CaSigner`]: SHA-256 on the host, `CKM_ECDSA` in the
//!   token, the raw `r‖s` turned into a low-S DER `Ecdsa-Sig-Value`. A cryptoki `Session` is
//!   `Send` but not `Sync`, so the signer keeps a small pool of sessions, one per signing thread.
//! - Every [`HsmError`] names the PKCS#11 function that failed, its return value, and what to do.
#![warn(missing_docs)]

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use const_oid::db::rfc5912;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Function, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use der::asn1::{BitString, OctetString};
use der::{Decode, Encode};
use sha2::Digest;
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use warden_core::crypto::{CaSigner, SignError};
use zeroize::Zeroizing;

/// The environment variable holding the user PIN.
pub const PIN_ENV: &str = "WARDEN_HSM_PIN";
/// Where Debian's softhsm2 package puts the module.
pub const SOFTHSM2_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// Sessions kept open for reuse by one signer; more are opened under load and closed after.
const POOL_SIZE: usize = 4;
/// DER of the P-256 curve OID, as found in `CKA_EC_PARAMS`.
const P256_PARAMS: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// Which token and key to use, and the PIN to log in with. `Debug` never shows the PIN.
#[derive(Clone)]
pub struct HsmConfig {
    /// The PKCS#11 module (`.so`).
    pub module: PathBuf,
    /// The token's label (`CKA_LABEL` of the token, as set by `softhsm2-util --init-token`).
    pub token_label: String,
    /// The key pair's `CKA_LABEL`.
    pub key_label: String,
    /// The user PIN.
    pub pin: Zeroizing<String>,
}

impl fmt::Debug for HsmConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HsmConfig")
            .field("module", &self.module)
            .field("token_label", &self.token_label)
            .field("key_label", &self.key_label)
            .finish_non_exhaustive()
    }
}

/// Reads the user PIN from `pin_file` when given, else from `WARDEN_HSM_PIN`. A trailing newline
/// in the file is ignored.
pub fn read_pin(pin_file: Option<&Path>) -> Result<Zeroizing<String>, HsmError> {
    if let Some(path) = pin_file {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            HsmError::Pin(format!("cannot read the PIN file {}: {e}", path.display()))
        })?);
        let pin = text.trim_end_matches(['\r', '\n']);
        if pin.is_empty() {
            return Err(HsmError::Pin(format!(
                "the PIN file {} is empty",
                path.display()
            )));
        }
        return Ok(Zeroizing::new(pin.to_owned()));
    }
    match std::env::var(PIN_ENV) {
        Ok(pin) if !pin.is_empty() => Ok(Zeroizing::new(pin)),
        _ => Err(HsmError::Pin(format!(
            "no HSM user PIN: set {PIN_ENV} or pass --hsm-pin-file FILE (never on the command line)"
        ))),
    }
}

/// Why an HSM operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum HsmError {
    /// The PKCS#11 module could not be loaded.
    ModuleNotFound {
        /// The module path.
        module: PathBuf,
        /// The loader's error.
        reason: String,
    },
    /// No initialised token carries the label.
    TokenNotFound {
        /// The label asked for.
        label: String,
        /// The labels of the tokens that were found.
        available: Vec<String>,
    },
    /// `C_Login` refused the PIN.
    PinIncorrect {
        /// The token label.
        token: String,
    },
    /// No private key carries the label.
    KeyNotFound {
        /// The key label.
        label: String,
        /// The token label.
        token: String,
    },
    /// `generate_key` found a key with that label already.
    KeyExists {
        /// The key label.
        label: String,
        /// The token label.
        token: String,
    },
    /// The key is not an EC P-256 key.
    WrongKeyType {
        /// The key label.
        label: String,
        /// What was found.
        found: String,
    },
    /// The PIN could not be read.
    Pin(String),
    /// Any other failed PKCS#11 call.
    Call {
        /// The function, as `C_Sign`.
        function: String,
        /// The return value, as `CKR_DEVICE_REMOVED`, or the wrapper's error.
        rv: String,
        /// What Warden was doing.
        doing: &'static str,
    },
    /// The token returned data Warden cannot use (a malformed EC point or signature).
    Malformed(&'static str),
}

impl fmt::Display for HsmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ModuleNotFound { module, reason } => write!(
                f,
                "cannot load the PKCS#11 module {}: {reason}; check --hsm-module (SoftHSM2: {SOFTHSM2_MODULE} from the softhsm2 package; YubiHSM 2: yubihsm_pkcs11.so from yubihsm-shell)",
                module.display()
            ),
            Self::TokenNotFound { label, available } => write!(
                f,
                "C_GetTokenInfo: no token labelled {label:?} (found: {}); check --hsm-token-label, or create the token (softhsm2-util --init-token --free --label {label:?}) and check SOFTHSM2_CONF",
                if available.is_empty() {
                    "none".to_owned()
                } else {
                    format!("{available:?}")
                }
            ),
            Self::PinIncorrect { token } => write!(
                f,
                "C_Login returned CKR_PIN_INCORRECT on token {token:?}: the user PIN in {PIN_ENV} or --hsm-pin-file is wrong (repeated failures may lock the token)"
            ),
            Self::KeyNotFound { label, token } => write!(
                f,
                "C_FindObjects: no EC private key labelled {label:?} on token {token:?}; check --hsm-key-label, or create the root with `warden hsm init-root`"
            ),
            Self::KeyExists { label, token } => write!(
                f,
                "a key labelled {label:?} already exists on token {token:?}; refusing to overwrite it (choose another --hsm-key-label)"
            ),
            Self::WrongKeyType { label, found } => write!(
                f,
                "C_GetAttributeValue: key {label:?} is {found}, but Warden needs an EC P-256 (secp256r1) key; choose another --hsm-key-label"
            ),
            Self::Pin(message) => f.write_str(message),
            Self::Call {
                function,
                rv,
                doing,
            } => {
                write!(f, "{function} returned {rv} while {doing}")?;
                if rv.contains("DEVICE")
                    || rv.contains("TOKEN_NOT_PRESENT")
                    || rv.contains("SESSION")
                {
                    f.write_str("; check that the HSM is connected and reachable")?;
                }
                Ok(())
            }
            Self::Malformed(what) => write!(f, "the token returned {what}"),
        }
    }
}

impl std::error::Error for HsmError {}

/// `CamelCase` return value name → `CKR_SCREAMING_SNAKE`.
fn rv_name(rv: RvError) -> String {
    let debug = format!("{rv:?}");
    let mut out = String::from("CKR_");
    for (i, c) in debug.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

fn call(doing: &'static str) -> impl Fn(CkError) -> HsmError {
    move |e| match e {
        CkError::Pkcs11(rv, function) => HsmError::Call {
            function: function_name(function),
            rv: rv_name(rv),
            doing,
        },
        other => HsmError::Call {
            function: "cryptoki".to_owned(),
            rv: other.to_string(),
            doing,
        },
    }
}

fn function_name(function: Function) -> String {
    format!("C_{function:?}")
}

/// An opened token with the user logged in.
pub struct Hsm {
    pkcs11: Pkcs11,
    slot: Slot,
    token_label: String,
    /// Keeps the login alive: PKCS#11 logs out when the last session of the application closes.
    login: Mutex<Session>,
}

impl fmt::Debug for Hsm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hsm")
            .field("token_label", &self.token_label)
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

impl Hsm {
    /// Loads the module, finds the token by label and logs in as the user.
    pub fn open(config: &HsmConfig) -> Result<Arc<Self>, HsmError> {
        let pkcs11 = Pkcs11::new(&config.module).map_err(|e| HsmError::ModuleNotFound {
            module: config.module.clone(),
            reason: match e {
                CkError::LibraryLoading(e) => e.to_string(),
                other => other.to_string(),
            },
        })?;
        match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(call("initialising the PKCS#11 module")(e)),
        }
        let mut available = Vec::new();
        let mut found = None;
        for slot in pkcs11
            .get_slots_with_initialized_token()
            .map_err(call("listing the slots"))?
        {
            let info = pkcs11
                .get_token_info(slot)
                .map_err(call("reading a token's label"))?;
            let label = info.label().trim_end().to_owned();
            if label == config.token_label {
                found = Some(slot);
                break;
            }
            available.push(label);
        }
        let slot = found.ok_or_else(|| HsmError::TokenNotFound {
            label: config.token_label.clone(),
            available,
        })?;
        let session = pkcs11
            .open_rw_session(slot)
            .map_err(call("opening a session"))?;
        let pin = AuthPin::from(config.pin.as_str());
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => {
                return Err(HsmError::PinIncorrect {
                    token: config.token_label.clone(),
                });
            }
            Err(e) => return Err(call("logging in")(e)),
        }
        Ok(Arc::new(Self {
            pkcs11,
            slot,
            token_label: config.token_label.clone(),
            login: Mutex::new(session),
        }))
    }

    /// Opens the token and finds the signing key named in `config`.
    pub fn open_signer(config: &HsmConfig) -> Result<HsmSigner, HsmError> {
        Self::open(config)?.signer(&config.key_label)
    }

    /// The token's label.
    pub fn token_label(&self) -> &str {
        &self.token_label
    }

    fn with_login_session<T>(&self, f: impl FnOnce(&Session) -> T) -> T {
        let session = self.login.lock().unwrap_or_else(PoisonError::into_inner);
        f(&session)
    }

    /// Generates an EC P-256 key pair inside the token: token object, private, sensitive, never
    /// extractable, sign-only. Refuses when any object already carries `label`.
    pub fn generate_key(self: &Arc<Self>, label: &str) -> Result<HsmSigner, HsmError> {
        self.with_login_session(|session| {
            let existing = session
                .find_objects(&[Attribute::Label(label.as_bytes().to_vec())])
                .map_err(call("looking for an existing key"))?;
            if !existing.is_empty() {
                return Err(HsmError::KeyExists {
                    label: label.to_owned(),
                    token: self.token_label.clone(),
                });
            }
            let id = label.as_bytes().to_vec();
            let public = [
                Attribute::Token(true),
                Attribute::Private(false),
                Attribute::Verify(true),
                Attribute::EcParams(P256_PARAMS.to_vec()),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Id(id.clone()),
            ];
            let private = [
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Sign(true),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Id(id),
            ];
            session
                .generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
                .map_err(call("generating an EC P-256 key pair"))
        })?;
        self.signer(label)
    }

    /// Destroys the key pair labelled `label` (its private and public key objects); returns how
    /// many objects were destroyed. Only for undoing [`Hsm::generate_key`] in the same run,
    /// when what the key was made for could not be finished: a label names no other object then,
    /// since `generate_key` refuses a label in use.
    pub fn destroy_key_pair(&self, label: &str) -> Result<usize, HsmError> {
        self.with_login_session(|session| {
            let mut destroyed = 0;
            for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
                let found = session
                    .find_objects(&[
                        Attribute::Class(class),
                        Attribute::Label(label.as_bytes().to_vec()),
                    ])
                    .map_err(call("looking up the key to remove"))?;
                for object in found {
                    session
                        .destroy_object(object)
                        .map_err(call("removing the key"))?;
                    destroyed += 1;
                }
            }
            Ok(destroyed)
        })
    }

    /// Finds the EC P-256 key pair labelled `label` and returns a signer for it.
    pub fn signer(self: &Arc<Self>, label: &str) -> Result<HsmSigner, HsmError> {
        let (private, public) = self.with_login_session(|session| {
            let private = find_one(session, label, ObjectClass::PRIVATE_KEY)?;
            let public = find_one(session, label, ObjectClass::PUBLIC_KEY)?;
            Ok::<_, HsmError>((private, public))
        })?;
        let Some(_) = private else {
            return Err(HsmError::KeyNotFound {
                label: label.to_owned(),
                token: self.token_label.clone(),
            });
        };
        let Some(public) = public else {
            return Err(HsmError::KeyNotFound {
                label: format!("{label} (public half)"),
                token: self.token_label.clone(),
            });
        };
        let public_key =
            self.with_login_session(|session| read_public_key(session, public, label))?;
        let signer = HsmSigner {
            hsm: Arc::clone(self),
            key_label: label.to_owned(),
            public_key,
            pool: Mutex::new(Vec::new()),
        };
        // One signature up front: a key without CKA_SIGN or of the wrong kind fails here, not
        // in the middle of a rotation.
        signer.sign_raw(b"warden-hsm self-test")?;
        Ok(signer)
    }

    /// Reads boolean attributes of the private key labelled `label`; for tests and audits.
    pub fn private_key_attributes(
        &self,
        label: &str,
        types: &[AttributeType],
    ) -> Result<Vec<Attribute>, HsmError> {
        self.with_login_session(|session| {
            let key = find_one(session, label, ObjectClass::PRIVATE_KEY)?.ok_or_else(|| {
                HsmError::KeyNotFound {
                    label: label.to_owned(),
                    token: self.token_label.clone(),
                }
            })?;
            session
                .get_attributes(key, types)
                .map_err(call("reading key attributes"))
        })
    }

    fn open_signing_session(&self, label: &str) -> Result<(Session, ObjectHandle), HsmError> {
        let session = self
            .pkcs11
            .open_ro_session(self.slot)
            .map_err(call("opening a signing session"))?;
        let key = find_one(&session, label, ObjectClass::PRIVATE_KEY)?.ok_or_else(|| {
            HsmError::KeyNotFound {
                label: label.to_owned(),
                token: self.token_label.clone(),
            }
        })?;
        Ok((session, key))
    }
}

fn find_one(
    session: &Session,
    label: &str,
    class: ObjectClass,
) -> Result<Option<ObjectHandle>, HsmError> {
    let found = session
        .find_objects(&[
            Attribute::Class(class),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .map_err(call("looking up the key by label"))?;
    Ok(found.first().copied())
}

fn read_public_key(
    session: &Session,
    public: ObjectHandle,
    label: &str,
) -> Result<SubjectPublicKeyInfoOwned, HsmError> {
    let attributes = session
        .get_attributes(
            public,
            &[
                AttributeType::KeyType,
                AttributeType::EcParams,
                AttributeType::EcPoint,
            ],
        )
        .map_err(call("reading the public key"))?;
    let mut key_type = None;
    let mut params = None;
    let mut point = None;
    for attribute in attributes {
        match attribute {
            Attribute::KeyType(t) => key_type = Some(t),
            Attribute::EcParams(p) => params = Some(p),
            Attribute::EcPoint(p) => point = Some(p),
            _ => {}
        }
    }
    let wrong = |found: String| HsmError::WrongKeyType {
        label: label.to_owned(),
        found,
    };
    match key_type {
        Some(t) if t == KeyType::EC => {}
        Some(t) => return Err(wrong(format!("a {t} key"))),
        None => return Err(wrong("a key of unknown type".to_owned())),
    }
    if params.as_deref() != Some(&P256_PARAMS[..]) {
        return Err(wrong("an EC key on another curve".to_owned()));
    }
    let point = point.ok_or(HsmError::Malformed("no CKA_EC_POINT"))?;
    // CKA_EC_POINT is a DER OCTET STRING around the uncompressed point; some modules omit the
    // wrapper, so a bare 65-byte point is accepted too.
    let raw = match OctetString::from_der(&point) {
        Ok(octets) => octets.as_bytes().to_vec(),
        Err(_) => point,
    };
    p256::PublicKey::from_sec1_bytes(&raw)
        .map_err(|_| HsmError::Malformed("a CKA_EC_POINT that is not a P-256 point"))?;
    Ok(SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned {
            oid: rfc5912::ID_EC_PUBLIC_KEY,
            parameters: Some(
                der::Any::encode_from(&rfc5912::SECP_256_R_1)
                    .map_err(|_| HsmError::Malformed("an unencodable curve"))?,
            ),
        },
        subject_public_key: BitString::from_bytes(&raw)
            .map_err(|_| HsmError::Malformed("an unencodable EC point"))?,
    })
}

/// A P-256 private key in a token, signing through a small pool of sessions.
pub struct HsmSigner {
    hsm: Arc<Hsm>,
    key_label: String,
    public_key: SubjectPublicKeyInfoOwned,
    pool: Mutex<Vec<(Session, ObjectHandle)>>,
}

impl fmt::Debug for HsmSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HsmSigner")
            .field("token_label", &self.hsm.token_label)
            .field("key_label", &self.key_label)
            .finish_non_exhaustive()
    }
}

impl HsmSigner {
    /// The token this key lives in.
    pub fn hsm(&self) -> &Arc<Hsm> {
        &self.hsm
    }

    /// The key's label.
    pub fn key_label(&self) -> &str {
        &self.key_label
    }

    /// Signs SHA-256(`message`) and returns the DER `Ecdsa-Sig-Value` with low S.
    pub fn sign_der(&self, message: &[u8]) -> Result<Vec<u8>, HsmError> {
        let raw = self.sign_raw(message)?;
        let signature = p256::ecdsa::Signature::from_slice(&raw)
            .map_err(|_| HsmError::Malformed("an ECDSA signature that is not 64 bytes r||s"))?;
        let signature = signature.normalize_s();
        Ok(signature.to_der().as_bytes().to_vec())
    }

    fn sign_raw(&self, message: &[u8]) -> Result<Vec<u8>, HsmError> {
        let digest = sha2::Sha256::digest(message);
        let pooled = self
            .pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let (session, key) = match pooled {
            Some(entry) => entry,
            None => self.hsm.open_signing_session(&self.key_label)?,
        };
        // A failed session is dropped, not returned: the next call opens a fresh one.
        let raw = session
            .sign(&Mechanism::Ecdsa, key, &digest)
            .map_err(call("signing with the HSM key"))?;
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < POOL_SIZE {
            pool.push((session, key));
        }
        Ok(raw)
    }
}

impl CaSigner for HsmSigner {
    fn signature_algorithm(&self) -> AlgorithmIdentifierOwned {
        AlgorithmIdentifierOwned {
            oid: rfc5912::ECDSA_WITH_SHA_256,
            parameters: None,
        }
    }

    fn public_key(&self) -> SubjectPublicKeyInfoOwned {
        self.public_key.clone()
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        self.sign_der(message).map_err(SignError::new)
    }
}

/// The DER of a public key, for comparing with a certificate's.
pub fn public_key_der(signer: &HsmSigner) -> Result<Vec<u8>, der::Error> {
    signer.public_key.to_der()
}
