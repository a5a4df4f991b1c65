/*
 * fwx - the user-mode data path: a pump that carries one TCP connection between two sockets,
 * through the connection's data filters when it has any, the datagram path, and
 * IFWXNetworkSocket over libuv for filters. Their calls are public (include/fwx/pump.h); this
 * header is the folder's own: how the pump works inside. Not installed. Everything here is
 * [loop-thread].
 * SPDX-License-Identifier: MIT
 *
 * Plain relay (no data filters), priced per connection: both fds join the loop's relay reactor
 * (one epoll set per loop, watched by one uv_poll handle), edge-triggered and armed once, so a
 * connection costs one epoll_ctl per fd and none as its directions fill and drain. A direction
 * starts by recv/send through the reactor's scratch buffer (16 KiB reads; what the destination
 * does not take is kept in a buffer of the direction's own until it does, and nothing more is
 * read meanwhile); a read that fills the 16 KiB says "bulk" and the direction moves to
 * splice(2) through a pipe taken from the reactor's pool (HAProxy's splice-auto). A direction
 * gives its pipe back as soon as it is empty, so an idle relayed connection holds no pipe and
 * no buffer. The bound on what is held is max_buffered per direction (the pipe is asked for at
 * most that). With opts->no_splice, or when splice fails with EINVAL, the relay copies in reads
 * of up to 64 KiB. EOF from one side is passed on as shutdown(SHUT_WR) on the other once its
 * data is written (when the other direction has ended already, the pump's close sends the
 * FIN); the pump ends when both directions have, or at the first error (ECONNRESET, EPIPE ...).
 *
 * SIGPIPE: splice(2) has no MSG_NOSIGNAL, so writing to a socket whose peer is gone raises
 * SIGPIPE. Hosts must ignore it (as libuv programs do); fwx_pump_start sets it to SIG_IGN when
 * it finds the default disposition, so a host that forgot does not die of a peer reset.
 *
 * Data-filter chain: each real fd becomes an IFWXSocket over uv_poll, and consecutive filters
 * are joined by a virtual socket pair. Filter i gets the left and right sockets of its slot:
 *
 *   client fd -- [real internal] df0 [virt] -- [virt] df1 ... dfN-1 [real external] -- server fd
 *
 * Socket semantics the filters see (the pump's IFWXSocket implementation):
 * - Send queues in order; on a real socket it completes once the kernel took every byte, on a
 *   virtual one once the other end's Recv(s) took every byte. Send with a NULL buffer:
 *   FWX_E_INVALIDARG. After Close or Shutdown(SHUT_WR), or once the pump ended: FWX_E_TERMINATING.
 *   A Send whose other end is closed completes with failure (UV_EPIPE). SendTo is Send (the
 *   address is ignored: these are stream sockets).
 * - Recv: at most one pending per socket; a second one fails with FWX_E_INVALIDARG. Recv(NULL)
 *   receives into a core-allocated buffer of the connection's buffer_size bytes, read-only to the
 *   receiver (SetDataSize/Append fail with FWX_E_NOT_SUPPORTED). A Recv into the filter's own
 *   buffer overwrites it from offset 0 and sets its data size. EOF is a completion with
 *   fSuccess=1 and a zero-length buffer, and every later Recv gets the same. NULL completion:
 *   FWX_E_POINTER.
 * - Shutdown(SHUT_WR) takes effect after the queued sends (the other end's Recv then sees EOF);
 *   SHUT_RD makes the pending and later Recvs see EOF; SHUT_RDWR both; other values
 *   FWX_E_INVALIDARG.
 * - Close fails the pending operations (Win32ErrorCode UV_ECANCELED); on a virtual end, the
 *   other end's Recv sees EOF and its queued Sends fail. Closing a real socket closes its fd.
 * - Completions always come from a loop callback (an idle handle), in the order the operations
 *   ended, never from inside Send/Recv/Shutdown/Close. Each buffer (and completion) is
 *   referenced while its operation is pending and released after CompleteAsyncIO returns.
 * - The pump holds one reference to each socket until it ends; a filter AddRefs what it keeps.
 *   After the pump ended, socket methods return FWX_E_TERMINATING (Close: FWX_S_OK) and the
 *   objects live until the filter's last Release.
 *
 * The filter path ends when both real sockets are finished: closed by the filter, failed (an
 * I/O error ends the pump after the failed completion), or EOF received and shut down for
 * writing. An emulated connection (external_fd == -1) has only the internal one.
 */
#ifndef FWX_USERMODE_H
#define FWX_USERMODE_H

#include "util/util.h"

#include <fwx/pump.h>
#include <uv.h>

/* The pump's calls are public: include/fwx/pump.h (fwx_pump_start, fwx_pump_abort, ...).
   Beyond what that header says, fwx_pump_start takes the filters' buffer size at each Recv
   (fwx_connection_buffer_size; 2048 bytes when the connection has none) and reads the chain
   only through the public chain calls, as a backend written outside libfwx would. */

/* The pump's former internal names, kept for callers inside libfwx's own tree that have not
   moved (the backends call fwx_pump_* now). */
typedef fwx_pump fwx__pump;
typedef fwx_pump_done_cb fwx__pump_done_cb;
static inline fwx_result fwx__pump_start(uv_loop_t *loop, IFWXConnection *conn, int internal_fd, int external_fd,
                                         const fwx_pump_options *opts, fwx__pump_done_cb done, void *arg,
                                         fwx__pump **out)
{
    return fwx_pump_start(loop, conn, internal_fd, external_fd, opts, done, arg, out);
}
static inline void fwx__pump_abort(fwx__pump *p) { fwx_pump_abort(p); }

/* The relay for fds a backend made itself (fwx_pump_start_fresh, fwx_pump_connect) is public
   too: include/fwx/pump.h. */

/* The datagram path (dgram.c) and the filter sockets (usock.c) are public too:
   fwx_dgram_start/_input/_stop and fwx_network_socket_new in include/fwx/pump.h, with the
   semantics the filters see. */

#endif /* FWX_USERMODE_H */
