-- Public key bundles: the only thing PostgreSQL holds (docs/ARCHITECTURE.md, "Data").
-- Every primary key starts with user_id so the schema can be sharded by user.

CREATE TABLE accounts (
  user_id              TEXT        PRIMARY KEY,
  -- The current signed device list (serialized padlock.v1.SignedDeviceList) and its version.
  device_list          BYTEA       NOT NULL,
  device_list_version  BIGINT      NOT NULL CHECK (device_list_version >= 1),
  -- Highest device id ever used: ids are never reused within an account.
  max_device_id        INTEGER     NOT NULL DEFAULT 1 CHECK (max_device_id >= 1),
  banned               BOOLEAN     NOT NULL DEFAULT FALSE,
  created_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE devices (
  user_id                  TEXT        NOT NULL REFERENCES accounts (user_id) ON DELETE CASCADE,
  device_id                INTEGER     NOT NULL CHECK (device_id >= 1),
  identity_key             BYTEA       NOT NULL CHECK (octet_length(identity_key) = 33),
  registration_id          INTEGER     NOT NULL,
  signed_prekey_id         INTEGER,
  signed_prekey            BYTEA       CHECK (octet_length(signed_prekey) = 33),
  signed_prekey_signature  BYTEA       CHECK (octet_length(signed_prekey_signature) = 64),
  created_at               TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id, device_id)
);

CREATE TABLE one_time_prekeys (
  user_id     TEXT    NOT NULL,
  device_id   INTEGER NOT NULL,
  key_id      INTEGER NOT NULL,
  public_key  BYTEA   NOT NULL CHECK (octet_length(public_key) = 33),
  PRIMARY KEY (user_id, device_id, key_id),
  FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);
