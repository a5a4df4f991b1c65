/*
 * fwx - firewall extensibility for Linux
 * SPDX-License-Identifier: MIT
 */
/**
 * @file fwx/pump.h
 * @brief The data path: a connection's data-filter chain, and fwx's pump that runs it.
 *
 * @page pump The data path
 * Data filters (IFWXConnection::AttachDataFilter and its kin) see a connection's bytes through
 * IFWXSocket objects that whoever carries the connection hands them with
 * IFWXDataFilter::SetSockets. Whoever that is (a backend, a host) needs three things from the
 * core, and gets them here without seeing its internals:
 *
 * - **the chain**: how many filters a connection has (fwx_connection_data_filters(), in
 *   fwx/host.h), which of them join this flow (fwx_connection_data_filter_applies()), and
 *   each one's SetSockets, made as a call into its plugin
 *   (fwx_connection_data_filter_set_sockets());
 * - **the calls back**: every completion a data path delivers to a filter
 *   (IFWXIOCompletion::CompleteAsyncIO) goes through fwx_connection_data_call(), so that the
 *   core knows which connection a filter works for (IFWXSession::RedirectConnections picks
 *   that one's) and the plugin watchdog times the plugin's code;
 * - **the sizes and counters**: the receive buffer size a filter set
 *   (fwx_connection_buffer_size()), bytes (fwx_connection_count_bytes()) and dropped datagrams
 *   (fwx_connection_count_dropped_datagrams()).
 *
 * fwx's own user-mode data path is built on these calls only, and is public too, so that a
 * backend written outside libfwx carries connections as the built-in ones do:
 * - **the pump** (fwx_pump_start(), fwx_pump_abort()): one TCP connection between two
 *   connected sockets, through its filters when it has any (the proxy and nft backends and
 *   fwx_connection_relay() use it);
 * - **the datagram path** (fwx_dgram_start(), fwx_dgram_input(), fwx_dgram_stop()): one UDP
 *   flow through the filters that apply to it, the backend keeping the real sockets;
 * - **filter sockets** (fwx_network_socket_new()): the IFWXNetworkSocket a backend's
 *   fwx_backend::create_socket hands a filter for IFWXFirewall::CreateNetworkSocket.
 *
 * A backend with a data path of its own uses the chain calls instead.
 *
 * Every function here is [loop-thread] unless its own comment says [any-thread].
 * @since 1.1
 */
#ifndef FWX_PUMP_H
#define FWX_PUMP_H

#include <fwx/host.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------- */
/** @name A connection's data-filter chain
 * The filters of a connection in chain order, client side first (index 0) to server side
 * (fwx_connection_data_filters() - 1). A filter may detach (and the connection end) during any
 * call into a plugin: read the count again after each.
 * @{
 */

/**
 * Says whether data filter @p index of @p conn joins this connection's data path: every filter
 * of a TCP connection; of a UDP flow, those attached without a destination and those attached
 * with this flow's external peer as destination
 * (IFWXConnection::AttachDataFilterWithDestination).
 * @param conn the connection (borrowed). @param index 0 .. fwx_connection_data_filters() - 1.
 * @return 1 when it joins, 0 when it does not or @p index is out of range (or @p conn NULL or
 *   not the core's).
 * [loop-thread] @since 1.1
 */
FWX_API int32_t fwx_connection_data_filter_applies(IFWXConnection *conn, uint32_t index);

/**
 * Calls IFWXDataFilter::SetSockets of data filter @p index of @p conn with the two sockets of
 * its place in the chain, as a call into the plugin that attached it (the watchdog times it;
 * the filter is referenced for the call, so it may detach meanwhile).
 * @param conn the connection (borrowed). @param index as fwx_connection_data_filter_applies().
 * @param internal the socket toward the client (borrowed; the filter AddRefs what it keeps).
 * @param external the socket toward the server, or NULL for an emulated connection's last
 *   filter, which is the data source itself.
 * @return what SetSockets returned; FWX_E_POINTER (@p conn NULL or not the core's, or
 *   @p internal NULL); FWX_E_INVALIDARG (@p index out of range); FWX_E_TERMINATING (the
 *   connection has ended, or the filter detached during the call).
 * [loop-thread] @since 1.1
 */
FWX_API fwx_result fwx_connection_data_filter_set_sockets(IFWXConnection *conn, uint32_t index, IFWXSocket *internal,
                                                          IFWXSocket *external);

/** A call into a connection's data filters: see fwx_connection_data_call(). */
typedef void (*fwx_data_call_fn)(void *arg);

/**
 * Runs @p fn(@p arg) as a call from @p conn's data path into its data filters: a data path
 * delivers each completion (IFWXIOCompletion::CompleteAsyncIO) from inside @p fn. During the
 * call the core takes what a filter asks for as asked for @p conn (the connection
 * IFWXSession::RedirectConnections redirects), and the plugin watchdog times it as the code of
 * the plugin whose filters @p conn has (if they are one plugin's; the plugin stays named after
 * its filters detached, as their completions still reach its code). Calls nest.
 * @param conn the connection (borrowed); NULL runs @p fn plainly.
 * @param fn the call (required). @param arg passed to @p fn.
 * [loop-thread] @since 1.1
 */
FWX_API void fwx_connection_data_call(IFWXConnection *conn, fwx_data_call_fn fn, void *arg);

/**
 * The receive buffer size the connection's filters asked for (IFWXConnection::SetBufferSize),
 * or the connection's default (4096 bytes for UDP); 0 when neither is set (the data path's
 * own default applies). Read it at each receive: a filter may change it at any time.
 * @param conn the connection (borrowed).
 * [loop-thread] @since 1.1
 */
FWX_API uint32_t fwx_connection_buffer_size(IFWXConnection *conn);

/**
 * Says that both sides of @p conn are connected, so that the end-to-end part of its handshake
 * limit (fwx_firewall_set_timeouts()) is over; fwx_pump_start() says it itself. Bytes a data
 * path moves count as activity for the idle limit through fwx_connection_count_bytes(), which
 * takes zero counts for bytes already counted.
 * @param conn the connection (borrowed); one that is not fwx's is ignored.
 * [loop-thread] @since 1.1
 */
FWX_API void fwx_connection_established(IFWXConnection *conn);

/**
 * Counts datagrams a data path dropped on @p conn (larger than the filter's receive buffer,
 * or more than it queues while the filter is not receiving) into
 * fwx_firewall_datagrams_dropped(). Logging them is the data path's business.
 * @param conn the connection (borrowed). @param n how many.
 * [loop-thread] @since 1.1
 */
FWX_API void fwx_connection_count_dropped_datagrams(IFWXConnection *conn, uint64_t n);

/**
 * A new I/O buffer of @p size bytes, as IFWXFirewall::CreateBuffer makes them: zero-filled,
 * data size 0. For a data path's receive into a buffer of its own (IFWXSocket::Recv with a NULL
 * buffer). @param size its size in bytes. @param out receives a new reference (+1).
 * @return FWX_S_OK, FWX_E_POINTER, FWX_E_INVALIDARG (@p size 0 or over 16 MiB),
 *   FWX_E_OUTOFMEMORY.
 * [any-thread] @since 1.1
 */
FWX_API fwx_result fwx_iobuffer_new(uint32_t size, IFWXIOBuffer **out);

/**
 * Makes a buffer from fwx_iobuffer_new() read-only (@p readonly nonzero) or writable again:
 * while read-only, IFWXIOBuffer::SetDataSize and IFWXIOBuffer::Append fail with
 * FWX_E_NOT_SUPPORTED. A data path sets it on a receive buffer it allocated once the data is
 * in, before the filter gets it, since sdk.h says such a buffer is the filter's to read only.
 * @return FWX_S_OK; FWX_E_POINTER; FWX_E_INVALIDARG (not a buffer of fwx's).
 * [loop-thread] @since 1.1
 */
FWX_API fwx_result fwx_iobuffer_set_readonly(IFWXIOBuffer *buf, int32_t readonly);

/** @} */

/* ---------------------------------------------------------------------------------------- */
/** @name The pump: fwx's TCP data path
 * Carries one TCP connection between two connected socket descriptors: through the
 * connection's data filters when it has any (each real descriptor becomes an IFWXSocket, and
 * consecutive filters are joined by virtual socket pairs), else as a plain relay: small
 * transfers by recv/send, and a direction whose read fills 16 KiB by splice(2) from then on
 * (through a pipe the loop's relay lends it while it holds bytes), or always by recv/send with
 * fwx_pump_options::no_splice. EOF from one side is passed on as a half-close
 * (shutdown(SHUT_WR)) to the other once its data is written.
 * @{
 */

/** A running pump. Owned by fwx; freed after its done callback returns. */
typedef struct fwx_pump fwx_pump;

/** Options of fwx_pump_start(). Start from fwx_pump_options_init(). */
typedef struct fwx_pump_options {
    /** sizeof(fwx_pump_options); fields past it are taken as their defaults. */
    uint32_t struct_size;
    /** Nonzero: a plain relay reads and writes through user memory, never splice(2), even for
        bulk transfers (for tests and benchmarks). Default 0. */
    int32_t no_splice;
    /** Bound on the bytes held per direction: reading a side stops while its direction holds
        this much (in user memory, or in the pipe of a direction that splices, whose size is
        clamped to 4 KiB .. 1 MiB). 0: the default, 256 KiB. */
    uint64_t max_buffered;
} fwx_pump_options;

/** Fills @p opts with the defaults. [any-thread] @since 1.1 */
FWX_API void fwx_pump_options_init(fwx_pump_options *opts);

/**
 * Called once when a pump has ended: both descriptors are closed and the pump's reference to
 * its connection is released. The connection's data filters are left to the core (it detaches
 * them when the connection ends).
 * @param pump valid for the call only (freed when it returns): fwx_pump_error() says why.
 * @param arg the @p arg of fwx_pump_start().
 * [loop-thread]
 */
typedef void (*fwx_pump_done_cb)(fwx_pump *pump, void *arg);

/**
 * Carries a TCP connection between @p internal_fd (the client's side) and @p external_fd (the
 * server's side), through @p conn's data filters in chain order (their SetSockets are called
 * before this returns; a failure ends the pump). Bytes are counted on @p conn
 * (fwx_connection_count_bytes()). The pump ends when both directions have ended, when the
 * filters have finished both real sockets (closed, failed, or EOF received and shut down for
 * writing), at the first I/O error, or at fwx_pump_abort(); then both descriptors are closed
 * and @p done runs exactly once, from a loop callback, never from inside this call.
 *
 * SIGPIPE: splice(2) cannot be told not to raise it; the first plain relay sets SIGPIPE to
 * ignored if its disposition is still the default.
 * @param loop the loop to run on (borrowed).
 * @param conn the connection (borrowed; the pump holds a reference until it ends), or NULL
 *   for a plain relay of no connection.
 * @param internal_fd a connected, nonblocking TCP socket; the pump owns it on FWX_S_OK.
 * @param external_fd the same for the server side, or -1 when a filter emulates the server
 *   (IFWXConnection::EmulateForConnect): the last filter then gets a NULL external socket.
 * @param opts borrowed, may be NULL for the defaults.
 * @param done required. @param arg passed to @p done.
 * @param out receives the pump (valid until @p done returns).
 * @return FWX_S_OK (then @p done follows exactly once); FWX_E_POINTER; FWX_E_INVALIDARG (a
 *   descriptor that is not a TCP stream socket, both the same, -1 without a data filter,
 *   @p conn not the core's); FWX_E_OUTOFMEMORY; FWX_E_FAIL (a libuv handle could not be
 *   set up). On failure nothing was taken and @p done is never called. (A descriptor libuv
 *   then cannot watch ends the started pump at once: FWX_S_OK, and @p done follows with
 *   fwx_pump_error() UV_EBADF.)
 * [loop-thread] @since 1.1
 */
FWX_API fwx_result fwx_pump_start(uv_loop_t *loop, IFWXConnection *conn, int internal_fd, int external_fd,
                                  const fwx_pump_options *opts, fwx_pump_done_cb done, void *arg, fwx_pump **out);

/**
 * Ends a pump now; its done callback still follows, from a loop callback. Harmless while it
 * is ending; must not be called once the done callback has returned. NULL is fine.
 * [loop-thread] @since 1.1
 */
FWX_API void fwx_pump_abort(fwx_pump *pump);

/**
 * fwx_pump_start() for descriptors the caller made itself (accept4(), socket() and connect())
 * and never duplicated: no SO_TYPE probes, default options, and the relay closes them without
 * taking them out of its epoll set first (close() does, when no copy of the descriptor lives
 * on). A backend that accepts and connects on its own descriptors saves three system calls a
 * connection this way. Same results and ownership as fwx_pump_start().
 * [loop-thread] @since 1.1
 */
FWX_API fwx_result fwx_pump_start_fresh(uv_loop_t *loop, IFWXConnection *conn, int internal_fd, int external_fd,
                                        fwx_pump_done_cb done, void *arg, fwx_pump **out);

/** A connect in progress on the loop's relay reactor (fwx_pump_connect()). @since 1.1 */
typedef struct fwx_pump_connector fwx_pump_connector;

/**
 * Called once when a fwx_pump_connect() ends: @p status 0 (connected) or a negative errno
 * (UV_ECONNREFUSED ...). @since 1.1
 */
typedef void (*fwx_pump_connect_cb)(void *arg, int status);

/**
 * Connects a nonblocking TCP socket of the caller's on the loop's relay reactor, registered
 * there once for the whole connection: the pump the caller starts on it from the callback
 * (fwx_pump_start_connected()) takes the registration over, so the server side costs one
 * epoll_ctl in all; SO_ERROR is read only when the handshake failed.
 *
 * The caller keeps @p fd either way (it closes it on failure, or hands it to the pump). From a
 * successful callback the caller starts the pump or cancels (if it does neither, the
 * registration goes when the callback returns); after the callback the connector is gone.
 * @param loop the loop (borrowed). @param fd a nonblocking TCP socket, not yet connected.
 * @param to the address to connect to (borrowed). @param cb required. @param arg for @p cb.
 * @param out receives the connector, valid until @p cb has run or fwx_pump_connect_cancel().
 * @return 0 and *out, then @p cb runs exactly once from a loop callback unless cancelled
 *   first; or a negative errno at once (connect() refused, no memory): no callback.
 * [loop-thread] @since 1.1
 */
FWX_API int fwx_pump_connect(uv_loop_t *loop, int fd, const struct sockaddr *to, fwx_pump_connect_cb cb, void *arg,
                             fwx_pump_connector **out);

/**
 * Keeps the loop's relay reactor (its epoll set, its poll and idle handles, its pipe pool) open
 * while the caller holds it, also when no pump or connect uses it. Without a hold the reactor
 * closes with its last pump and the next relayed connection makes it again (epoll_create1, a
 * poll handle, three more system calls): a backend whose relays come one at a time, an FTP
 * control connection's data connections one after another, pays that for each. Holds count;
 * each fwx_pump_reactor_hold() that returned 0 takes one fwx_pump_reactor_release() on the
 * same loop, before the loop is closed (after the last release the reactor closes from a loop
 * callback once its last pump ended, so uv_loop_close() then finds no handle of it).
 * @param loop the loop (borrowed).
 * @return 0, UV_EINVAL (@p loop NULL) or UV_ENOMEM (the reactor could not be made: relays
 *   still work, each makes the reactor as before).
 * [loop-thread] @since 1.1
 */
FWX_API int fwx_pump_reactor_hold(uv_loop_t *loop);

/** Gives back a fwx_pump_reactor_hold() of @p loop; without one held, does nothing.
    [loop-thread] @since 1.1 */
FWX_API void fwx_pump_reactor_release(uv_loop_t *loop);

/**
 * Cancels a fwx_pump_connect(): no callback after it (the caller then closes the fd). NULL is
 * fine. [loop-thread] @since 1.1
 */
FWX_API void fwx_pump_connect_cancel(fwx_pump_connector *c);

/**
 * fwx_pump_start_fresh() with the connector's descriptor as @p external_fd, from its
 * successful callback. On failure the connector is cancelled (the caller still closes both
 * descriptors). [loop-thread] @since 1.1
 */
FWX_API fwx_result fwx_pump_start_connected(uv_loop_t *loop, IFWXConnection *conn, int internal_fd,
                                            fwx_pump_connector *connector, fwx_pump_done_cb done, void *arg,
                                            fwx_pump **out);

/**
 * Why a pump ended (valid in its done callback): 0 when both directions ended, UV_ECANCELED
 * (a negative errno, ECANCELED) after fwx_pump_abort(), UV_ECONNABORTED when a filter's
 * SetSockets failed, else the negative errno of the I/O error.
 * [loop-thread] @since 1.1
 */
FWX_API int fwx_pump_error(const fwx_pump *pump);

/**
 * Bytes a plain relay holds now, both directions (in user memory, or in the pipes of the
 * directions that splice); 0 on the filter path, where the filters hold the data.
 * [loop-thread] @since 1.1
 */
FWX_API size_t fwx_pump_buffered(const fwx_pump *pump);

/** 1 when the plain relay splices its bulk transfers (small ones go by recv/send all the
    same); 0 with no_splice, after splice(2) refused the descriptors (EINVAL: it copies from
    then on), or on the filter path. [loop-thread] @since 1.1 */
FWX_API int32_t fwx_pump_spliced(const fwx_pump *pump);

/** @} */

/* ---------------------------------------------------------------------------------------- */
/** @name The datagram path: fwx's UDP data path
 * Carries one UDP flow (one peer on each side) through the data filters of its connection that
 * apply to it (fwx_connection_data_filter_applies(): a filter attached with a destination joins
 * only the flow whose external peer is that destination). The chain is the pump's: a real
 * socket toward the internal peer, virtual pairs between filters, a real socket toward the
 * external peer. The backend keeps the real sockets: it hands each datagram it receives to
 * fwx_dgram_input(), and the path hands each datagram a filter sends on a real socket to the
 * backend's ::fwx_dgram_send_cb.
 *
 * What the filters see, beyond sdk.h:
 * - One Send is one datagram. It completes (from a loop callback) once the send callback took
 *   it (a failure there fails the Send with that errno; nothing is retried) or once it is
 *   queued at the other end of a virtual pair (a closed other end: UV_EPIPE). A zero-length
 *   Send completes and carries nothing. SendTo is Send: each side has one peer.
 * - One Recv takes one whole datagram. Recv(NULL) allocates a read-only buffer of the
 *   connection's buffer size (fwx_connection_buffer_size(), read at each Recv). A datagram
 *   larger than the receive buffer is dropped, never cut: counted
 *   (fwx_connection_count_dropped_datagrams()), the first of a flow logged, and the Recv stays
 *   pending for the next. A Recv on a real socket reports the side's peer as ExternalAddress.
 * - A socket holds up to 64 datagrams while its filter has no Recv pending; more are dropped
 *   and counted. Zero-length datagrams from the network are not carried (they would read as
 *   EOF).
 * - EOF (a zero-length completion) comes on a virtual end after the other end's
 *   Shutdown(SHUT_WR) or Close, and on any socket after its own SHUT_RD. Real sockets have no
 *   EOF: the flow ends when its backend stops the path (idle, or the connection ended); then
 *   pending operations fail with UV_ECANCELED.
 * - Completions always come from a loop callback, never from inside a method, and each is a
 *   call into the connection's data filters (fwx_connection_data_call()).
 * @{
 */

/** A running datagram path. Owned by fwx; freed after fwx_dgram_stop(). */
typedef struct fwx_dgram fwx_dgram;

/** The two sides of a datagram path (the `side` of fwx_dgram_input() and ::fwx_dgram_send_cb). */
enum fwx_dgram_side {
    FWX_DGRAM_INTERNAL = 0, /**< the internal peer: the client */
    FWX_DGRAM_EXTERNAL = 1  /**< the external peer: the server */
};

/**
 * Sends one datagram a filter wrote on a real socket out of one side of the path.
 * Implemented by the backend; called from a filter's Send (which may come inside
 * fwx_dgram_start(), from SetSockets), never after fwx_dgram_stop().
 * @param arg the @p arg of fwx_dgram_start().
 * @param side FWX_DGRAM_INTERNAL: to the internal peer; FWX_DGRAM_EXTERNAL: to the external one.
 * @param data borrowed for the call. @param n its length (may be 0).
 * @return 0 when the datagram was handed to the kernel, else a negative errno (the datagram
 *   is lost and the filter's Send fails with it).
 * [loop-thread] @since 1.1
 */
typedef int (*fwx_dgram_send_cb)(void *arg, int32_t side, const uint8_t *data, size_t n);

/**
 * Starts the datagram path of @p conn between @p internal_peer and @p external_peer: calls
 * SetSockets of each filter that applies, in chain order, before it returns.
 * @param loop the loop to run on (borrowed).
 * @param conn the flow's connection (borrowed; the path holds a reference until it is freed).
 * @param internal_peer, internal_len the internal peer's address (copied).
 * @param external_peer, external_len the external peer's address (copied).
 * @param send required. @param arg passed to @p send.
 * @param out receives the path (NULL unless FWX_S_OK).
 * @return FWX_S_OK: the path runs until fwx_dgram_stop(). FWX_S_FALSE: no filter applies to
 *   this flow; the backend relays its datagrams itself (nothing to stop). FWX_E_POINTER;
 *   FWX_E_INVALIDARG (an address that is not a valid IPv4/IPv6 one, @p conn not the core's);
 *   FWX_E_OUTOFMEMORY; FWX_E_FAIL (a libuv handle could not be set up); or what a filter's
 *   SetSockets returned, FWX_E_TERMINATING when a filter detached meanwhile (logged: the flow
 *   should be refused). On failure nothing is left to stop.
 * [loop-thread] @since 1.1
 */
FWX_API fwx_result fwx_dgram_start(uv_loop_t *loop, IFWXConnection *conn, const struct sockaddr *internal_peer,
                                   uint32_t internal_len, const struct sockaddr *external_peer, uint32_t external_len,
                                   fwx_dgram_send_cb send, void *arg, fwx_dgram **out);

/**
 * Hands the path one datagram the backend received from one side's peer; its bytes are
 * counted on the connection (fwx_connection_count_bytes()).
 * @param dg the path.
 * @param side FWX_DGRAM_INTERNAL (from the internal peer) or FWX_DGRAM_EXTERNAL.
 * @param data borrowed for the call (copied when queued). @param n its length.
 * @return FWX_S_OK (delivered to the filter's Recv, queued, or dropped and counted as above);
 *   FWX_S_FALSE (not carried: zero length, or that side was closed or shut down for reading by
 *   its filter); FWX_E_POINTER (@p dg NULL, or @p data NULL with @p n nonzero);
 *   FWX_E_INVALIDARG (@p side, or @p n over 4 GiB); FWX_E_TERMINATING (after fwx_dgram_stop()).
 * [loop-thread] @since 1.1
 */
FWX_API fwx_result fwx_dgram_input(fwx_dgram *dg, int32_t side, const uint8_t *data, size_t n);

/**
 * Ends the path: the send callback is not called again, pending operations of the filters
 * fail with UV_ECANCELED from a loop callback, then the path frees itself and releases its
 * connection. Stop it before ending the connection, so that the filters' Recvs fail first.
 * @p dg must not be used after; NULL is fine.
 * [loop-thread] @since 1.1
 */
FWX_API void fwx_dgram_stop(fwx_dgram *dg);

/** @} */

/* ---------------------------------------------------------------------------------------- */
/** @name Sockets for filters
 * @{
 */

/**
 * A new IFWXNetworkSocket over libuv (TCP or UDP), as the built-in backends hand a filter for
 * IFWXFirewall::CreateNetworkSocket (fwx_backend::create_socket). Semantics beyond sdk.h:
 * - The OS socket is made by Bind or Connect (its family follows the address): Send, Recv,
 *   Set/GetSockOpt, GetSockName and Listen before that fail with FWX_E_INVALIDARG (Listen:
 *   FWX_E_WSAEINVAL). UDP Recv before Bind binds to 0.0.0.0:0.
 * - TCP Send/Recv after Connect and before it completes are held until it does; a failed
 *   connect fails them (the Recv with the connect's error, the Sends with UV_ECANCELED).
 * - One pending Recv per socket (a second: FWX_E_INVALIDARG); Accepts queue. Recv(NULL)
 *   allocates a read-only buffer of 8 KiB (TCP) or 64 KiB (UDP). A UDP datagram larger than
 *   the receive buffer is dropped.
 * - The IP filter (Bind, SetIpFilter; kept by reference) is checked on each accepted
 *   connection and each received datagram; those from addresses it does not include are
 *   dropped (closed or discarded, with a line in @p fw's log) and the Accept or Recv stays
 *   pending.
 * - Completions come from a loop callback, never from inside a method. Close fails pending
 *   Recv and Accept with UV_ECANCELED and cancels queued Sends. Releasing the last reference
 *   closes the socket; its memory is freed in libuv's close callbacks, so the loop must run
 *   after that.
 * @param loop the loop to run on (borrowed).
 * @param fw the firewall whose log gets the socket's refusals (borrowed; it must outlive the
 *   socket), or NULL for none.
 * @param protocol FWX_PROTOCOL_TCP or FWX_PROTOCOL_UDP.
 * @param out receives a new reference (+1), NULL on failure.
 * @return FWX_S_OK; FWX_E_POINTER; FWX_E_INVALIDARG (@p protocol); FWX_E_OUTOFMEMORY;
 *   FWX_E_FAIL (a libuv handle could not be set up).
 * [loop-thread] @since 1.1
 */
FWX_API fwx_result fwx_network_socket_new(uv_loop_t *loop, fwx_firewall *fw, int32_t protocol,
                                          IFWXNetworkSocket **out);

/** @} */

#ifdef __cplusplus
}
#endif

#endif /* FWX_PUMP_H */
