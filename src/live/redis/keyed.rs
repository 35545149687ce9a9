//! What the live streams in Redis get without a place in the event log (typing,
//! receipts): appended by a script, once per (user, dedup key, kind).

use std::sync::LazyLock;

use super::{PIPELINE, RedisLog, same_payload};
use crate::live::{Delivery, LiveError, RETAINED_PER_USER};

/// Deliveries in one script call (a payload to more users takes several).
const CALL: usize = 500;

/// Appends what the feed did not bring (typing, receipts: deliveries without a place).
/// For each of its payloads, appends the payload once per (user, dedup key, kind) to
/// each user's stream, then publishes what it appended, atomically: a crash cannot
/// leave an entry marked delivered but missing, and publish order is stream order. An
/// entry's id keeps the place of the stream's newest entry and takes the next number
/// after it (`place-*`), so the feed's next entry, at a later place, still comes
/// after it. It publishes one message (see `Wire::parse_all`), or one per MiB of
/// blocks (`wire::MESSAGE_MAX`). Who has a payload is a set per dedup key and kind,
/// kept a day after its last delivery. The message is joined once, at the end, from
/// its pieces: Redis's Lua hashes every string a script makes, and a string per block
/// or per line would hash each payload once more.
/// KEYS: for each payload, that set, then each user's stream. ARGV: cap, channel, then
/// for each payload its kind, the payload, the number of users n, and the n user ids.
static DELIVER: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local cap, channel = ARGV[1], ARGV[2]
local a, k = 3, 1
local parts, size = {}, 0
while a <= #ARGV do
  local kind, payload, n = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  local head, block = #parts, 0
  for j = 1, n do
    local user = ARGV[a + 2 + j]
    if redis.call('SADD', KEYS[k], user) == 1 then
      local top = redis.call('XREVRANGE', KEYS[k + j], '+', '-', 'COUNT', 1)[1]
      local at = top and string.match(top[1], '^%d+') or '0'
      local id = redis.call('XADD', KEYS[k + j], 'MAXLEN', '~', cap, at .. '-*', 'kind', kind, 'payload', payload)
      if block == 0 then
        if head > 0 then parts[#parts + 1] = '\n\n' end
        parts[#parts + 1] = kind
        parts[#parts + 1] = '\n'
        parts[#parts + 1] = payload
        block = #kind + 1 + #payload
      end
      parts[#parts + 1] = '\n'
      parts[#parts + 1] = user
      parts[#parts + 1] = ' '
      parts[#parts + 1] = id
      block = block + 2 + #user + #id
    end
  end
  redis.call('EXPIRE', KEYS[k], 86400)
  if block > 0 and size > 0 and size + block > 1048576 then
    redis.call('PUBLISH', channel, table.concat(parts, '', 1, head))
    local rest = {}
    for i = head + 2, #parts do rest[#rest + 1] = parts[i] end
    parts, size = rest, 0
  end
  size = size + block
  a = a + 3 + n
  k = k + 1 + n
end
if #parts > 0 then
  redis.call('PUBLISH', channel, table.concat(parts))
end
",
    )
});

impl RedisLog {
    /// Adds one script call delivering `parts` (each one payload's) to `pipe`.
    fn call(&self, pipe: &mut redis::Pipeline, parts: &[&[Delivery]]) {
        let keys: usize = parts.iter().map(|part| 1 + part.len()).sum();
        let cmd = pipe.cmd("EVALSHA").arg(DELIVER.get_hash()).arg(keys);
        for part in parts {
            let first = &part[0];
            cmd.arg(format!(
                "{}recipients:{}:{}",
                self.prefix,
                first.kind.as_str(),
                first.dedup_key
            ));
            for d in *part {
                cmd.arg(self.stream(&d.user_id));
            }
        }
        cmd.arg(RETAINED_PER_USER).arg(self.channel());
        for part in parts {
            let first = &part[0];
            cmd.arg(first.kind.as_str())
                .arg(&*first.payload)
                .arg(part.len());
            for d in *part {
                cmd.arg(d.user_id.as_str());
            }
        }
        cmd.ignore();
    }

    /// Runs a pipeline of delivery calls, loading the script if Redis lost it.
    async fn send(&self, pipe: &redis::Pipeline) -> Result<(), LiveError> {
        let mut conn = self.conn.clone();
        match pipe.query_async::<()>(&mut conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                DELIVER.load_async(&mut conn).await?;
                pipe.query_async::<()>(&mut conn).await?;
            }
            done => done?,
        }
        Ok(())
    }

    /// Appends deliveries without a place (see [`DELIVER`]).
    pub(super) async fn append_keyed(&self, deliveries: &[Delivery]) -> Result<(), LiveError> {
        // Script calls of up to `CALL` deliveries (the payloads of many events, or
        // one payload's part), a pipeline of such calls per round trip. Each call is
        // atomic on its own; running a pipeline again (after NOSCRIPT, when Redis lost
        // its scripts) delivers nothing twice.
        let mut pipe = redis::pipe();
        let (mut call, mut in_call, mut piped) = (Vec::new(), 0, 0);
        for group in same_payload(deliveries) {
            for part in group.chunks(CALL) {
                if in_call + part.len() > CALL {
                    self.call(&mut pipe, &std::mem::take(&mut call));
                    in_call = 0;
                }
                call.push(part);
                in_call += part.len();
                piped += part.len();
                if piped >= PIPELINE {
                    self.call(&mut pipe, &std::mem::take(&mut call));
                    self.send(&pipe).await?;
                    pipe.clear();
                    (in_call, piped) = (0, 0);
                }
            }
        }
        if !call.is_empty() {
            self.call(&mut pipe, &call);
        }
        if piped > 0 {
            self.send(&pipe).await?;
        }
        Ok(())
    }
}
