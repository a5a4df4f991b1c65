/*
 * fwx - the user-mode data path: a pump that carries one TCP connection between two sockets,
 * through the connection's data filters when it has any, and IFWXNetworkSocket over libuv for
 * filters. Internal; not installed. Everything here is [loop-thread].
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

/* The pump's former internal names, kept while lib/backends/nft (and fuzz/socks_fuzz.c) still
   use them; to go once they call fwx_pump_* themselves. */
typedef fwx_pump fwx__pump;
typedef fwx_pump_done_cb fwx__pump_done_cb;
static inline fwx_result fwx__pump_start(uv_loop_t *loop, IFWXConnection *conn, int internal_fd, int external_fd,
                                         const fwx_pump_options *opts, fwx__pump_done_cb done, void *arg,
                                         fwx__pump **out)
{
    return fwx_pump_start(loop, conn, internal_fd, external_fd, opts, done, arg, out);
}
static inline void fwx__pump_abort(fwx__pump *p) { fwx_pump_abort(p); }

/* fwx_pump_start for fds the caller made itself (accept4, socket + connect) and never
   duplicated: no SO_TYPE probes, and the relay closes them without taking them out of its
   epoll set first (close does, when no copy of the fd lives on). Default options. */
fwx_result fwx__pump_start_fresh(uv_loop_t *loop, IFWXConnection *conn, int internal_fd, int external_fd,
                                 fwx_pump_done_cb done, void *arg, fwx_pump **out);

/* Connects a nonblocking TCP socket of the caller's on the loop's relay reactor, registered
   there once for the whole connection: the pump the caller starts on it from the callback
   (fwx__pump_start_connected) takes the registration over, so the server side costs one
   epoll_ctl in all; SO_ERROR is read only when the handshake failed. 0 and *out, then cb runs
   exactly once from a loop callback with 0 or a negative errno (UV_ECONNREFUSED ...), unless
   cancelled first; or a negative errno at once (connect() refused, no memory): no callback.
   The caller keeps the fd either way (it closes it on failure, or hands it to the pump). From
   a successful callback the caller starts the pump or cancels (if it does neither, the
   registration goes when the callback returns); after the callback the connector is gone, so
   forget it there. fwx__pump_connect_cancel: no callback after it (the caller then closes the
   fd); NULL is fine. [loop-thread] */
typedef struct fwx__pump_connector fwx__pump_connector;
typedef void (*fwx__pump_connect_cb)(void *arg, int status);
int fwx__pump_connect(uv_loop_t *loop, int fd, const struct sockaddr *to, fwx__pump_connect_cb cb, void *arg,
                      fwx__pump_connector **out);
void fwx__pump_connect_cancel(fwx__pump_connector *c);
/* fwx__pump_start_fresh with the connector's fd as external_fd, from its successful callback.
   On failure the connector is cancelled (the caller still closes both fds). */
fwx_result fwx__pump_start_connected(uv_loop_t *loop, IFWXConnection *conn, int internal_fd,
                                     fwx__pump_connector *connector, fwx_pump_done_cb done, void *arg, fwx_pump **out);

/*
 * The datagram path: one UDP flow (one peer on each side) through its connection's data
 * filters. Filters attached with a destination (AttachDataFilterWithDestination) join only
 * the flow whose external peer is that destination. The chain is the TCP pump's (internal
 * real socket, virtual pairs, external real socket); what the filters see differs thus:
 * - One Send is one datagram. It completes (from a loop callback) once handed to the kernel
 *   (a real socket: failure with the send's errno; nothing is retried) or queued at the other
 *   end of a virtual pair (a closed other end: UV_EPIPE). A zero-length Send completes and
 *   carries nothing. SendTo is Send: each side has one peer.
 * - One Recv takes one whole datagram. Recv(NULL) allocates a read-only buffer of the
 *   connection's buffer size (SetBufferSize; 4096 bytes for UDP by default, T18 of
 *   doc/sdk-rules.md), read at each Recv. A datagram larger than the receive buffer is dropped, never cut: counted
 *   (fwx_firewall_datagrams_dropped), the first of a flow logged, and the Recv stays pending
 *   for the next. A Recv on a real socket reports the side's peer as ExternalAddress.
 * - A socket holds up to 64 datagrams while its filter has no Recv pending; more are dropped
 *   and counted. Zero-length datagrams from the network are not carried (they would read as
 *   EOF).
 * - EOF (a zero-length completion) comes on a virtual end after the other end's Shutdown
 *   (SHUT_WR) or Close, and on any socket after its own SHUT_RD. Real sockets have no EOF: the
 *   flow ends when it idles out or the core ends the connection; then pending operations fail
 *   with UV_ECANCELED and the connection's filters are detached.
 * - Completions always come from a loop callback, never from inside a method.
 */
typedef struct fwx__dgram fwx__dgram;
typedef struct fwx__dgram_io {
    /* Sends one datagram out of side 0 (to the internal peer) or 1 (to the external one):
       0, or a negative errno (the datagram is lost). Never called after fwx__dgram_stop. */
    int (*send)(void *arg, int side, const uint8_t *data, size_t n);
    void *arg;
} fwx__dgram_io;

/* Starts the datagram path of conn (borrowed; AddRef'd until the path is freed) between the
   internal peer (side 0) and the external one (side 1), calling each applicable filter's
   SetSockets. FWX_S_OK and *out; FWX_S_FALSE when no filter applies (the owner relays the
   datagrams itself; *out NULL); FWX_E_POINTER, FWX_E_INVALIDARG, FWX_E_OUTOFMEMORY, FWX_E_FAIL,
   or a filter's SetSockets failure (logged; the flow should be refused): nothing to stop. */
fwx_result fwx__dgram_start(uv_loop_t *loop, IFWXConnection *conn, const struct sockaddr *internal_peer,
                            const struct sockaddr *external_peer, const fwx__dgram_io *io, fwx__dgram **out);
/* A datagram arrived from side 0 (the internal peer) or 1; counted on the connection. */
void fwx__dgram_input(fwx__dgram *d, int side, const uint8_t *data, size_t n);
/* Ends the path: io.send is not called again; pending operations fail from a loop callback,
   then the path frees itself. d must not be used after. */
void fwx__dgram_stop(fwx__dgram *d);

/* IFWXNetworkSocket over libuv for filters (IFWXFirewall::CreateNetworkSocket): TCP (uv_tcp_t)
   and UDP (uv_udp_t). *out is a new reference (+1). FWX_E_POINTER, FWX_E_INVALIDARG (protocol),
   FWX_E_OUTOFMEMORY, FWX_E_FAIL (handle init failed).
   Semantics beyond sdk.h:
   - The OS socket is made by Bind or Connect (its family follows the address): Send, Recv,
     Set/GetSockOpt, GetSockName and Listen before that fail with FWX_E_INVALIDARG (Listen:
     FWX_E_WSAEINVAL). UDP Recv before Bind binds to 0.0.0.0:0 (libuv's rule).
   - TCP Send/Recv after Connect and before it completes are held until it does; a failed
     connect fails them (the Recv with the connect's error, the Sends with UV_ECANCELED).
   - One pending Recv per socket (a second: FWX_E_INVALIDARG); Accepts queue. Recv(NULL)
     allocates a read-only buffer of 8 KiB (TCP) or 64 KiB (UDP). A UDP datagram larger than the
     receive buffer is dropped.
   - The IP filter (Bind, SetIpFilter; kept by reference) is checked on each accepted connection
     and each received datagram; those from addresses it does not include are dropped (closed /
     discarded) and the Accept or Recv stays pending.
   - Completions come from a loop callback, never from inside a method. Close fails pending
     Recv and Accept with UV_ECANCELED and cancels queued Sends. Releasing the last reference
     closes the socket; memory is freed in the libuv close callbacks. */
fwx_result fwx__usock_new(uv_loop_t *loop, int32_t protocol, IFWXNetworkSocket **out);
/* Gives a filter socket the firewall it logs refusals through (may stay unset: no log). */
void fwx__usock_set_firewall(IFWXNetworkSocket *sock, fwx_firewall *fw);

#endif /* FWX_USERMODE_H */
