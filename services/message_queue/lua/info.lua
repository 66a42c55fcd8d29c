-- KEYS: inbox, sequence, meta. Returns {depth, last sequence, bytes}.
return {redis.call('XLEN', KEYS[1]), tonumber(redis.call('GET', KEYS[2]) or '0'),
        tonumber(redis.call('HGET', KEYS[3], 'bytes') or '0')}
