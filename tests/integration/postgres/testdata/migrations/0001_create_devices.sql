-- Test migration: no IF NOT EXISTS, so applying it twice fails loudly.
CREATE TABLE devices (
  user_id text NOT NULL,
  device_id integer NOT NULL CHECK (device_id > 0),
  identity_key bytea NOT NULL,
  PRIMARY KEY (user_id, device_id)
);
