-- Public key bundles: the only thing PostgreSQL holds (docs/KEY_DIRECTORY.md, "Data model").
-- Every primary key starts with user_id so the schema can be sharded by user. Every column is on
-- the allow-list of tests/integration/key_directory (public key, id, signature, version,
-- timestamp, count/flag); nothing else (no names, no IP addresses, no ban reasons) is stored.

CREATE TABLE accounts (
  user_id                TEXT        PRIMARY KEY,
  -- Version of the current signed device list. Kept after an operator reset so that a
  -- re-registration continues above it (caches keyed by version never see a version twice).
  device_list_version    BIGINT      NOT NULL CHECK (device_list_version >= 1),
  -- The primary's signature over padlock-device-list-v1(user_id, version, devices ordered by id).
  -- NULL only while the account is reset (no devices).
  device_list_signature  BYTEA       CHECK (octet_length(device_list_signature) = 64),
  -- Highest device id ever used: ids are never reused within an account.
  max_device_id          INTEGER     NOT NULL DEFAULT 1 CHECK (max_device_id >= 1),
  banned                 BOOLEAN     NOT NULL DEFAULT FALSE,
  created_at             TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The entries of the device list (device id, identity key, registration id) and each device's
-- signed prekey. The signed device list is rebuilt from these rows and accounts' signature.
CREATE TABLE devices (
  user_id                  TEXT        NOT NULL REFERENCES accounts (user_id) ON DELETE CASCADE,
  device_id                INTEGER     NOT NULL CHECK (device_id >= 1),
  identity_key             BYTEA       NOT NULL CHECK (octet_length(identity_key) = 33),
  registration_id          BIGINT      NOT NULL CHECK (registration_id >= 0),
  signed_prekey_id         BIGINT,
  signed_prekey            BYTEA       CHECK (octet_length(signed_prekey) = 33),
  signed_prekey_signature  BYTEA       CHECK (octet_length(signed_prekey_signature) = 64),
  created_at               TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id, device_id),
  CHECK ((signed_prekey_id IS NULL) = (signed_prekey IS NULL)
         AND (signed_prekey IS NULL) = (signed_prekey_signature IS NULL))
);

CREATE TABLE one_time_prekeys (
  user_id     TEXT    NOT NULL,
  device_id   INTEGER NOT NULL,
  key_id      BIGINT  NOT NULL,
  public_key  BYTEA   NOT NULL CHECK (octet_length(public_key) = 33),
  PRIMARY KEY (user_id, device_id, key_id),
  FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);
