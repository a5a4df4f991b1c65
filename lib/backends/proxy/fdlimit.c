/*
 * fwx - the proxy backend out of file descriptors.
 *
 * Every relayed connection costs descriptors beyond the accepted one: the upstream socket (and
 * a SOCKS client's copy out of its libuv handle), and pipes for bulk transfers (the relay
 * keeps a small pool per loop). When they run out, a connection used
 * to be "accepted" and then "closed (0 bytes)" with no reason. Now:
 * - the cause is logged once per burst: the first shortage logs a line naming the errno
 *   (EMFILE: this process's limit; ENFILE: the system's), later ones within a second are
 *   counted and the next line says how many there were (fwx__logpace);
 * - the refusal is explicit: a SOCKS client gets reply 1 (general failure), any other client a
 *   reset (SO_LINGER 0) rather than an orderly close that reads as an empty answer;
 * - a reserve descriptor is kept so that a connection whose accept() itself fails is still
 *   taken off the listen queue and reset (closing the reserve frees a slot, accept, reset,
 *   reopen: the trick of libev and nginx), instead of sitting in the backlog until it times out.
 * SPDX-License-Identifier: MIT
 */
#include "backends/proxy/proxy_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

bool fwx__proxy_fd_short(int err)
{
    if (err < 0)
        err = -err; /* libuv's negative errno */
    return err == EMFILE || err == ENFILE;
}

void fwx__proxy_fd_shortage(pstate *st, int err, const char *what)
{
    if (err < 0)
        err = -err;
    uint32_t unsaid;
    if (!fwx__logpace_say(&st->fd_pace, uv_now(st->loop), &unsaid))
        return;
    fwx_firewall_log(st->fw, FWX_LOG_ERROR,
                     "proxy: out of file descriptors (%s: %s) while %s: new connections are refused until "
                     "some close (%u more refused since the last line)",
                     err == ENFILE ? "ENFILE" : "EMFILE", strerror(err), what, unsaid);
}

void fwx__proxy_fd_reset(int fd)
{
    /* A reset says "refused" to the client; an orderly close would read as an empty answer. */
    struct linger lg = {1, 0};
    (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
}

void fwx__proxy_reserve_open(pstate *st)
{
    if (st->reserve_fd <= 0)
        st->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

void fwx__proxy_reserve_close(pstate *st)
{
    if (st->reserve_fd > 0)
        close(st->reserve_fd);
    st->reserve_fd = -1;
}

void fwx__proxy_accept_failed(pstate *st, uv_stream_t *server, int status, const char *what)
{
    uv_os_fd_t lfd;
    if (uv_fileno((uv_handle_t *)server, &lfd) != 0)
        lfd = -1;
    fwx__proxy_accept_failed_fd(st, lfd, status, what);
}

void fwx__proxy_accept_failed_fd(pstate *st, int lfd, int status, const char *what)
{
    if (!fwx__proxy_fd_short(status))
        return;
    fwx__proxy_fd_shortage(st, status, what);
    if (st->reserve_fd <= 0 || lfd < 0)
        return;
    fwx__proxy_reserve_close(st);
    /* Bounded: the backlog holds at most what listen() allowed; 64 per shortage is plenty. */
    for (int i = 0; i < 64; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0)
            break;
        fwx__proxy_fd_reset(fd);
        close(fd);
        st->fd_pace.unsaid++; /* refused with a reset: the next line counts it */
    }
    fwx__proxy_reserve_open(st);
}
