/*
 * fwx - one log line a second for an event that can come in floods (util.h, fwx__logpace).
 *
 * A refusal that a client can cause at will (a SOCKS cap, a gateway out of file descriptors)
 * must be said, but a flood of them must not flood the log. The rule, in one place: the first
 * event is said at once; the next ones within FWX__LOGPACE_MS are counted, and the next line
 * says how many there were.
 * SPDX-License-Identifier: MIT
 */
#include "util/util.h"

bool fwx__logpace_say(fwx__logpace *p, uint64_t now_ms, uint32_t *unsaid)
{
    if (p->said_ms != 0 && now_ms + 1 - p->said_ms < FWX__LOGPACE_MS) {
        p->unsaid++;
        *unsaid = 0;
        return false;
    }
    p->said_ms = now_ms + 1; /* never 0: 0 is "nothing said yet" */
    *unsaid = p->unsaid;
    p->unsaid = 0;
    return true;
}
