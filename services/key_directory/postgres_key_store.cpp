#include "services/key_directory/postgres_key_store.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace padlock::key_directory {
namespace {

// Claims run prepared, each as one statement without BEGIN/COMMIT (one round trip): they are
// the hot path (DESIGN §8: ≥ 5 000 claims/s).
constexpr char kClaim[] = "kd_claim";

// A whole claim in one statement. $1 target user, $2/$3 requester user and device (NULL: no
// check), $4 device id (0: every device). One row per device of the target, ascending, or one
// row of NULL target columns when the target has no devices (unknown, reset): the account
// columns, the device's keys, the requester check (device $3 of $2 is on the list of an account
// that is not banned; reset accounts have no device rows; true when $2 is NULL), the one-time
// prekey taken for the device (NULL when none was taken) and its count of stored one-time
// prekeys (NULL when no bundle is built for it). A prekey is taken only for a device that gets a
// bundle (listed, signed prekey set, asked for), only when the account is not banned and the
// requester passes. One key per device, lowest id first, taken for good; SKIP LOCKED:
// concurrent claimers of one device each lock a different row instead of queueing on the
// first. The DELETE in the CTE is invisible to the count (same snapshot), so the count includes
// the taken key and the caller subtracts it.
constexpr char kClaimSql[] =
    "WITH target AS MATERIALIZED ("
    "  SELECT a.device_list_version, a.device_list_signature, a.banned, d.device_id,"
    "    d.identity_key, d.registration_id, d.signed_prekey_id, d.signed_prekey,"
    "    d.signed_prekey_signature,"
    "    NOT a.banned AND d.signed_prekey_id IS NOT NULL"
    "      AND ($4::bigint = 0 OR d.device_id = $4::bigint) AS wanted"
    "  FROM accounts a JOIN devices d USING (user_id) WHERE a.user_id = $1),"
    " listed AS MATERIALIZED ("
    "  SELECT $2::text IS NULL OR EXISTS (SELECT 1 FROM accounts ra JOIN devices rd"
    "    USING (user_id) WHERE ra.user_id = $2::text AND rd.device_id = $3::bigint"
    "    AND NOT ra.banned) AS ok),"
    " taken AS ("
    "  DELETE FROM one_time_prekeys WHERE ctid IN ("
    "    SELECT (SELECT p.ctid FROM one_time_prekeys p"
    "            WHERE p.user_id = $1 AND p.device_id = t.device_id"
    "            ORDER BY p.key_id LIMIT 1 FOR UPDATE SKIP LOCKED)"
    "    FROM target t, listed l WHERE l.ok AND t.wanted)"
    "  RETURNING device_id, key_id, public_key) "
    "SELECT t.device_list_version, t.device_list_signature, t.banned, t.device_id,"
    "  t.identity_key, t.registration_id, t.signed_prekey_id, t.signed_prekey,"
    "  t.signed_prekey_signature, l.ok, k.key_id, k.public_key,"
    "  CASE WHEN t.wanted THEN (SELECT count(*) FROM one_time_prekeys c"
    "    WHERE c.user_id = $1 AND c.device_id = t.device_id) END "
    "FROM listed l LEFT JOIN target t ON true LEFT JOIN taken k ON k.device_id = t.device_id "
    "ORDER BY t.device_id";

std::string Bytes(const pqxx::field& field) { return pqxx::binarystring(field).str(); }

// PostgreSQL array literals for unnest(): ids, and bytea elements in hex form.
std::string IdArray(const std::vector<uint32_t>& ids) {
  std::string out = "{";
  for (size_t i = 0; i < ids.size(); ++i) absl::StrAppend(&out, i ? "," : "", ids[i]);
  return out + "}";
}

std::string ByteaArray(const std::vector<OneTimePreKey>& keys) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "{";
  for (size_t i = 0; i < keys.size(); ++i) {
    out += i ? ",\"\\\\x" : "\"\\\\x";
    for (unsigned char c : keys[i].public_key) {
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
    out += '"';
  }
  return out + "}";
}

std::string TextArray(const std::vector<std::string>& values) {
  // Only validated user ids reach here ([a-z0-9._-] or +digits): no quoting needed inside "".
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    absl::StrAppend(&out, i ? "," : "", "\"", values[i], "\"");
  }
  return out + "}";
}

void InsertPreKeys(pqxx::work& txn, const std::string& user, uint32_t device,
                   const std::vector<OneTimePreKey>& keys) {
  if (keys.empty()) return;
  std::vector<uint32_t> ids;
  for (const auto& key : keys) ids.push_back(key.key_id);
  txn.exec_params(
      "INSERT INTO one_time_prekeys (user_id, device_id, key_id, public_key) "
      "SELECT $1, $2, k.id, k.pk FROM unnest($3::bigint[], $4::bytea[]) AS k(id, pk)",
      user, static_cast<int64_t>(device), IdArray(ids), ByteaArray(keys));
}

void SetSignedPreKey(pqxx::work& txn, const std::string& user, uint32_t device,
                     const SignedPreKey& key) {
  txn.exec_params(
      "UPDATE devices SET signed_prekey_id = $3, signed_prekey = $4, signed_prekey_signature = $5 "
      "WHERE user_id = $1 AND device_id = $2",
      user, static_cast<int64_t>(device), static_cast<int64_t>(key.key_id),
      pqxx::binarystring(key.public_key), pqxx::binarystring(key.signature));
}

void InsertDevice(pqxx::work& txn, const std::string& user, const DeviceKeys& keys) {
  txn.exec_params(
      "INSERT INTO devices (user_id, device_id, identity_key, registration_id) "
      "VALUES ($1, $2, $3, $4)",
      user, static_cast<int64_t>(keys.device_id), pqxx::binarystring(keys.identity_key),
      static_cast<int64_t>(keys.registration_id));
  if (keys.signed_prekey) SetSignedPreKey(txn, user, keys.device_id, *keys.signed_prekey);
  InsertPreKeys(txn, user, keys.device_id, keys.one_time_prekeys);
}

std::vector<uint32_t> DeviceIds(pqxx::work& txn, const std::string& user) {
  std::vector<uint32_t> ids;
  for (const auto& row : txn.exec_params(
           "SELECT device_id FROM devices WHERE user_id = $1 ORDER BY device_id", user)) {
    ids.push_back(row[0].as<uint32_t>());
  }
  return ids;
}

struct Locked {
  uint64_t version = 0;
  bool banned = false;
  int64_t devices = 0;
};

// The account row, locked for the rest of the transaction; nullopt when absent.
std::optional<Locked> LockAccount(pqxx::work& txn, const std::string& user) {
  pqxx::result r = txn.exec_params(
      "SELECT device_list_version, banned, "
      "  (SELECT count(*) FROM devices d WHERE d.user_id = a.user_id) "
      "FROM accounts a WHERE user_id = $1 FOR UPDATE",
      user);
  if (r.empty()) return std::nullopt;
  return Locked{r[0][0].as<uint64_t>(), r[0][1].as<bool>(), r[0][2].as<int64_t>()};
}

}  // namespace

std::vector<postgres::PreparedStatement> PostgresKeyStore::Statements() {
  return {{kClaim, kClaimSql}};
}

PostgresKeyStore::PostgresKeyStore(postgres::Pool* primary, postgres::Pool* replica)
    : primary_(primary), replica_(replica != nullptr ? replica : primary) {}

absl::StatusOr<AccountState> PostgresKeyStore::GetAccount(const std::string& user_id) {
  return primary_->Run(
      "get account",
      [&](pqxx::work& txn) -> absl::StatusOr<AccountState> {
        pqxx::result a = txn.exec_params(
            "SELECT device_list_version, device_list_signature, max_device_id, banned "
            "FROM accounts WHERE user_id = $1",
            user_id);
        if (a.empty()) return absl::NotFoundError("no account");
        AccountState state{.banned = a[0][3].as<bool>(),
                           .max_device_id = a[0][2].as<uint32_t>(),
                           .list = DeviceList{.user_id = user_id,
                                              .version = a[0][0].as<uint64_t>()}};
        if (!a[0][1].is_null()) state.list.signature = Bytes(a[0][1]);
        for (const auto& row : txn.exec_params(
                 "SELECT device_id, identity_key, registration_id FROM devices "
                 "WHERE user_id = $1 ORDER BY device_id",
                 user_id)) {
          state.list.entries.push_back(
              {row[0].as<uint32_t>(), Bytes(row[1]), row[2].as<uint32_t>()});
        }
        state.reset = state.list.entries.empty();
        return state;
      },
      {.read_only = true, .idempotent = true});
}

absl::Status PostgresKeyStore::CreateAccount(const NewAccount& account, bool reclaim_reset) {
  const std::string& user = account.list.user_id;
  return primary_->WithTransaction("create account", [&](pqxx::work& txn) -> absl::Status {
    std::optional<Locked> existing = LockAccount(txn, user);
    if (existing) {
      if (existing->banned) return absl::PermissionDeniedError("account banned");
      if (existing->devices > 0 || !reclaim_reset) {
        return absl::AlreadyExistsError("user id taken");
      }
      if (account.list.version <= existing->version) {
        return absl::FailedPreconditionError("device_list.version must exceed the reset version");
      }
      txn.exec_params(
          "UPDATE accounts SET device_list_version = $2, device_list_signature = $3 "
          "WHERE user_id = $1",
          user, static_cast<int64_t>(account.list.version),
          pqxx::binarystring(account.list.signature));
    } else {
      // ON CONFLICT: a concurrent registration of the same id committed since our look-up.
      pqxx::result inserted = txn.exec_params(
          "INSERT INTO accounts (user_id, device_list_version, device_list_signature) "
          "VALUES ($1, $2, $3) ON CONFLICT (user_id) DO NOTHING RETURNING 1",
          user, static_cast<int64_t>(account.list.version),
          pqxx::binarystring(account.list.signature));
      if (inserted.empty()) return absl::AlreadyExistsError("user id taken");
    }
    InsertDevice(txn, user, account.primary);
    return absl::OkStatus();
  });
}

absl::Status PostgresKeyStore::ApplyDeviceList(const DeviceListUpdate& update) {
  const std::string& user = update.list.user_id;
  return primary_->WithTransaction("apply device list", [&](pqxx::work& txn) -> absl::Status {
    std::optional<Locked> locked = LockAccount(txn, user);
    if (!locked || locked->banned || locked->devices == 0) {
      return absl::NotFoundError("no account");
    }
    if (locked->version != update.expected_version) {
      return absl::AbortedError("device list changed concurrently");
    }
    std::vector<uint32_t> gone = update.removed_device_ids;
    for (const DeviceKeys& keys : update.written_devices) gone.push_back(keys.device_id);
    if (!gone.empty()) {
      // ON DELETE CASCADE removes their one-time prekeys in the same transaction.
      txn.exec_params("DELETE FROM devices WHERE user_id = $1 AND device_id = ANY($2::int[])",
                      user, IdArray(gone));
    }
    for (const DeviceKeys& keys : update.written_devices) InsertDevice(txn, user, keys);
    uint32_t highest = 1;
    for (const auto& entry : update.list.entries) highest = std::max(highest, entry.device_id);
    txn.exec_params(
        "UPDATE accounts SET device_list_version = $2, device_list_signature = $3, "
        "  max_device_id = GREATEST(max_device_id, $4) WHERE user_id = $1",
        user, static_cast<int64_t>(update.list.version),
        pqxx::binarystring(update.list.signature), static_cast<int64_t>(highest));
    return absl::OkStatus();
  });
}

absl::StatusOr<uint32_t> PostgresKeyStore::AddPreKeys(
    const DeviceAddress& device, const std::optional<SignedPreKey>& signed_prekey,
    const std::vector<OneTimePreKey>& one_time_prekeys, uint32_t max_stored) {
  return primary_->Run("add prekeys", [&](pqxx::work& txn) -> absl::StatusOr<uint32_t> {
    // Locking the device row serializes concurrent uploads, so the count check holds.
    pqxx::result found = txn.exec_params(
        "SELECT 1 FROM devices d JOIN accounts a USING (user_id) "
        "WHERE d.user_id = $1 AND d.device_id = $2 AND NOT a.banned FOR UPDATE OF d",
        device.user_id, static_cast<int64_t>(device.device_id));
    if (found.empty()) return absl::NotFoundError("device not listed");
    std::vector<uint32_t> ids;
    for (const auto& key : one_time_prekeys) ids.push_back(key.key_id);
    if (!ids.empty() && !txn.exec_params("SELECT 1 FROM one_time_prekeys WHERE user_id = $1 AND "
                                         "device_id = $2 AND key_id = ANY($3::bigint[]) LIMIT 1",
                                         device.user_id, static_cast<int64_t>(device.device_id),
                                         IdArray(ids))
                             .empty()) {
      return absl::AlreadyExistsError("one-time prekey id already stored");
    }
    const int64_t stored =
        txn.exec_params("SELECT count(*) FROM one_time_prekeys WHERE user_id = $1 AND "
                        "device_id = $2",
                        device.user_id, static_cast<int64_t>(device.device_id))[0][0]
            .as<int64_t>();
    const int64_t total = stored + static_cast<int64_t>(one_time_prekeys.size());
    if (total > max_stored) {
      return absl::ResourceExhaustedError(
          absl::StrCat("one-time prekeys: ", total, " would exceed ", max_stored));
    }
    if (signed_prekey) SetSignedPreKey(txn, device.user_id, device.device_id, *signed_prekey);
    InsertPreKeys(txn, device.user_id, device.device_id, one_time_prekeys);
    return static_cast<uint32_t>(total);
  });
}

absl::StatusOr<ClaimResult> PostgresKeyStore::ClaimBundles(
    const std::string& user_id, uint32_t device_id,
    const std::optional<DeviceAddress>& listed_requester) {
  return primary_->RunWithoutTransaction(
      "claim bundles", [&](pqxx::nontransaction& txn) -> absl::StatusOr<ClaimResult> {
        const int64_t wanted = device_id;
        // NULL requester parameters when no check is asked for.
        pqxx::result rows =
            listed_requester
                ? txn.exec_prepared(kClaim, user_id, listed_requester->user_id,
                                    static_cast<int64_t>(listed_requester->device_id), wanted)
                : txn.exec_prepared(kClaim, user_id, nullptr, nullptr, wanted);
        // Always at least one row (the requester check's), the requester judged first.
        if (!rows[0][9].as<bool>()) return absl::UnauthenticatedError(kRequesterNotListedMessage);
        if (rows[0][3].is_null() || rows[0][2].as<bool>()) return absl::NotFoundError("no account");
        ClaimResult result{.list = DeviceList{.user_id = user_id,
                                              .version = rows[0][0].as<uint64_t>(),
                                              .signature = Bytes(rows[0][1])}};
        for (const auto& row : rows) {
          const uint32_t id = row[3].as<uint32_t>();
          result.list.entries.push_back({id, Bytes(row[4]), row[5].as<uint32_t>()});
          if (row[12].is_null()) continue;  // no bundle for this device
          Bundle bundle{.device_id = id,
                        .identity_key = Bytes(row[4]),
                        .registration_id = row[5].as<uint32_t>(),
                        .signed_prekey = {row[6].as<uint32_t>(), Bytes(row[7]), Bytes(row[8])}};
          int64_t count = row[12].as<int64_t>();
          if (!row[10].is_null()) {
            bundle.one_time_prekey = OneTimePreKey{row[10].as<uint32_t>(), Bytes(row[11])};
            --count;
          }
          bundle.one_time_prekeys_remaining = static_cast<uint32_t>(std::max<int64_t>(count, 0));
          result.bundles.push_back(std::move(bundle));
        }
        if (device_id != 0 && result.bundles.empty()) {
          return absl::NotFoundError("device not listed or without signed prekey");
        }
        return result;
      });
}

absl::StatusOr<std::vector<DeviceList>> PostgresKeyStore::GetDeviceLists(
    const std::vector<std::string>& user_ids, ReadFrom from) {
  return (from == ReadFrom::kPrimary ? primary_ : replica_)->Run(
      "get device lists",
      [&](pqxx::work& txn) -> absl::StatusOr<std::vector<DeviceList>> {
        std::vector<DeviceList> lists;
        if (user_ids.empty()) return lists;
        for (const auto& row : txn.exec_params(
                 "SELECT a.user_id, a.device_list_version, a.device_list_signature, d.device_id,"
                 "  d.identity_key, d.registration_id "
                 "FROM accounts a JOIN devices d USING (user_id) "
                 "WHERE a.user_id = ANY($1::text[]) AND NOT a.banned "
                 "ORDER BY a.user_id, d.device_id",
                 TextArray(user_ids))) {
          const std::string user = row[0].as<std::string>();
          if (lists.empty() || lists.back().user_id != user) {
            lists.push_back(DeviceList{.user_id = user,
                                       .version = row[1].as<uint64_t>(),
                                       .signature = Bytes(row[2])});
          }
          lists.back().entries.push_back(
              {row[3].as<uint32_t>(), Bytes(row[4]), row[5].as<uint32_t>()});
        }
        return lists;
      },
      {.read_only = true, .idempotent = true});
}

absl::StatusOr<std::vector<uint32_t>> PostgresKeyStore::DeleteAccount(const std::string& user_id) {
  return primary_->Run("delete account",
                       [&](pqxx::work& txn) -> absl::StatusOr<std::vector<uint32_t>> {
                         if (!LockAccount(txn, user_id)) return absl::NotFoundError("no account");
                         std::vector<uint32_t> ids = DeviceIds(txn, user_id);
                         txn.exec_params("DELETE FROM accounts WHERE user_id = $1", user_id);
                         return ids;
                       });
}

absl::StatusOr<std::vector<uint32_t>> PostgresKeyStore::SetBanned(const std::string& user_id,
                                                                  bool banned) {
  return primary_->Run("set banned", [&](pqxx::work& txn) -> absl::StatusOr<std::vector<uint32_t>> {
    if (txn.exec_params("UPDATE accounts SET banned = $2 WHERE user_id = $1 RETURNING 1", user_id,
                        banned)
            .empty()) {
      return absl::NotFoundError("no account");
    }
    return DeviceIds(txn, user_id);
  });
}

absl::StatusOr<std::vector<uint32_t>> PostgresKeyStore::ResetAccount(const std::string& user_id) {
  return primary_->Run("reset account",
                       [&](pqxx::work& txn) -> absl::StatusOr<std::vector<uint32_t>> {
                         if (!LockAccount(txn, user_id)) return absl::NotFoundError("no account");
                         std::vector<uint32_t> ids = DeviceIds(txn, user_id);
                         txn.exec_params("DELETE FROM devices WHERE user_id = $1", user_id);
                         txn.exec_params(
                             "UPDATE accounts SET device_list_signature = NULL "
                             "WHERE user_id = $1",
                             user_id);
                         return ids;
                       });
}

}  // namespace padlock::key_directory
