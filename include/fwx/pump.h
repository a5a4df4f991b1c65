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
 * fwx's own TCP data path is built on these calls only, and is public too: fwx_pump_start()
 * carries a connection between two sockets, through its filters when it has any (the proxy
 * and nft backends and fwx_connection_relay() use it). A backend with a data path of its own
 * uses the chain calls instead.
 *
 * Every function here is [loop-thread].
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

#ifdef __cplusplus
}
#endif

#endif /* FWX_PUMP_H */
