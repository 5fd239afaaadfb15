//! Agreeing a session key where no SSH channel can carry one (`rock
//! COMMAND`, between two supervisors): each side sends an X25519 public key
//! (RFC 7748) and both derive the 256-bit [`SessionKey`] with HKDF-SHA-256
//! (RFC 5869) from the shared secret, salted with the session id and bound
//! to both public keys in role order. From then on the link handshake
//! (docs/PROTOCOL.md §3) proves every link and resume with that key, exactly
//! as in `rock -d`. docs/PROTOCOL.md §15 gives the derivation byte by byte
//! and what it does not protect against.
//!
//! Pure functions, like the rest of the crate: the caller brings the
//! randomness.

use curve25519_dalek::montgomery::MontgomeryPoint;
use hkdf::Hkdf;
use sha2::Sha256;

use crate::handshake::{SessionId, SessionKey};
use crate::session::Role;

/// The HKDF `info` prefix; the two public keys follow it.
pub const INFO_LABEL: &[u8; 16] = b"rock kex v1 key\0";

/// An X25519 public key as it travels: 32 bytes, little-endian u-coordinate.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(pub [u8; 32]);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey(")?;
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "..)")
    }
}

/// One side's secret for one agreement; used once, zeroed when dropped.
pub struct KeyShare {
    secret: [u8; 32],
    public: PublicKey,
}

impl std::fmt::Debug for KeyShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyShare")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl Drop for KeyShare {
    fn drop(&mut self) {
        // Best effort, as for SessionKey: no secret left in freed memory.
        for b in &mut self.secret {
            // SAFETY: `b` is a valid, aligned, exclusive reference.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

/// Why no key could be agreed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KexError {
    /// The peer's public key is a point of small order: the shared secret
    /// would be all zeros, known to anyone (RFC 7748 §6.1).
    #[error("the peer's X25519 public key is of small order; no secret can be agreed with it")]
    SmallOrder,
}

impl KeyShare {
    /// A key share from 32 random bytes (clamped as X25519 requires).
    pub fn new(random: [u8; 32]) -> KeyShare {
        KeyShare {
            secret: random,
            public: PublicKey(MontgomeryPoint::mul_base_clamped(random).to_bytes()),
        }
    }

    /// The public half, to send to the peer.
    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// The session key for `id`, this side being `role`, from the peer's
    /// public key. Consumes the share: one share, one agreement.
    pub fn agree(
        self,
        role: Role,
        peer: &PublicKey,
        id: &SessionId,
    ) -> Result<SessionKey, KexError> {
        let shared = MontgomeryPoint(peer.0).mul_clamped(self.secret);
        let mut shared = shared.to_bytes();
        if shared.iter().all(|&b| b == 0) {
            return Err(KexError::SmallOrder);
        }
        let (client, server) = match role {
            Role::Client => (&self.public, peer),
            Role::Server => (peer, &self.public),
        };
        let key = derive(&shared, &client.0, &server.0, id);
        for b in &mut shared {
            // SAFETY: `b` is a valid, aligned, exclusive reference.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
        Ok(key)
    }
}

/// HKDF-SHA-256: salt = the session id, IKM = the shared secret, info =
/// [`INFO_LABEL`] ‖ client public key ‖ server public key; 32 bytes out.
fn derive(shared: &[u8; 32], client: &[u8; 32], server: &[u8; 32], id: &SessionId) -> SessionKey {
    let hk = Hkdf::<Sha256>::new(Some(&id.0), shared);
    let mut info = [0u8; 16 + 32 + 32];
    info[..16].copy_from_slice(INFO_LABEL);
    info[16..48].copy_from_slice(client);
    info[48..].copy_from_slice(server);
    let mut okm = [0u8; 32];
    hk.expand(&info, &mut okm)
        .expect("32 bytes is far below HKDF-SHA-256's 8160-byte limit");
    SessionKey(okm)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex32(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex");
        }
        out
    }

    const ALICE_SECRET: &str = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
    const ALICE_PUBLIC: &str = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
    const BOB_SECRET: &str = "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb";
    const BOB_PUBLIC: &str = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f";
    const SHARED: &str = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";

    #[test]
    fn public_keys_and_the_shared_secret_match_rfc_7748() {
        let alice = KeyShare::new(hex32(ALICE_SECRET));
        let bob = KeyShare::new(hex32(BOB_SECRET));
        assert_eq!(alice.public(), PublicKey(hex32(ALICE_PUBLIC)));
        assert_eq!(bob.public(), PublicKey(hex32(BOB_PUBLIC)));
        let shared = MontgomeryPoint(hex32(BOB_PUBLIC)).mul_clamped(hex32(ALICE_SECRET));
        assert_eq!(shared.to_bytes(), hex32(SHARED));
    }

    #[test]
    fn both_sides_derive_the_same_key_and_it_depends_on_everything() {
        let id = SessionId([7; 16]);
        let (a, b) = (hex32(ALICE_SECRET), hex32(BOB_SECRET));
        let agree = |c: [u8; 32], s: [u8; 32], id: SessionId| {
            let (client, server) = (KeyShare::new(c), KeyShare::new(s));
            let (cp, sp) = (client.public(), server.public());
            let kc = client.agree(Role::Client, &sp, &id).expect("client");
            let ks = server.agree(Role::Server, &cp, &id).expect("server");
            assert_eq!(kc, ks, "both ends must hold the same key");
            kc
        };
        let key = agree(a, b, id);
        // The RFC's keys, Alice as client, the id 07×16: docs/PROTOCOL.md
        // §15 (computed independently with Python's hmac and hashlib).
        assert_eq!(
            key.0,
            hex32("677cfbaea6ee75961d778500101075675d49e3bd44948c62749af19c96d520c5")
        );
        assert_ne!(key, agree(b, a, id), "the roles are bound");
        assert_ne!(
            key,
            agree(a, b, SessionId([8; 16])),
            "the session id is bound"
        );
        assert_ne!(key.0, hex32(SHARED), "the key is not the raw secret");
    }

    #[test]
    fn small_order_public_keys_are_refused() {
        // The identity (0), the point of order 2 (1), and a point of order
        // 8 (RFC 7748 §6.1's examples come from this set).
        let small = [
            [0u8; 32],
            {
                let mut one = [0u8; 32];
                one[0] = 1;
                one
            },
            hex32("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
        ];
        for point in small {
            let share = KeyShare::new(hex32(ALICE_SECRET));
            assert_eq!(
                share.agree(Role::Client, &PublicKey(point), &SessionId([1; 16])),
                Err(KexError::SmallOrder),
                "{point:02x?}"
            );
        }
    }
}
