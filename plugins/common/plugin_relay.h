/*
 * fwx plugins - relaying a TCP connection's two directions inside a data filter.
 *
 * A filter that reads a control connection (FTP, RTSP) keeps one Recv pending per socket,
 * turns what one side sent into output for either side, and reads that side again only when
 * everything its last chunk produced has been sent (back-pressure: a peer that never reads
 * cannot make the gateway buffer without bound). This
 * is that loop, once, on the public SDK alone (no libfwx symbol: a plugin links it statically).
 *
 * The filter owns the relay (embedded in its data filter object), the sockets and the two
 * completions (one per side, whose CompleteAsyncIO calls plugin_relay_complete); the relay
 * borrows them. Side 0 is the internal socket (the client), side 1 the external (the server).
 * Everything runs on the loop thread. SPDX-License-Identifier: MIT
 */
#ifndef FWX_PLUGIN_RELAY_H
#define FWX_PLUGIN_RELAY_H

#include <fwx/fwx.h>
#include <fwx/plugin_helpers.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct plugin_relay_ops {
    /* A chunk read from side @p d (never empty): queue output with plugin_relay_out. */
    void (*data)(void *arg, int d, const uint8_t *p, size_t n);
    /* The relay is closing (either peer gone, an I/O error, the output limit): withdraw what
       the connection set up. @p why is NULL for an orderly end. Called once. */
    void (*closing)(void *arg, const char *why);
    /* Optional: true when the filter wants the connection closed as soon as its output is out
       (it answered a peer it no longer trusts). */
    bool (*finished)(void *arg);
} plugin_relay_ops;

typedef struct plugin_relay_out {
    char *p;
    size_t len, cap;
} plugin_relay_out;

typedef struct plugin_relay {
    IFWXFirewall *fw;          /* borrowed: makes the send buffers */
    IFWXSocket *s[2];          /* borrowed */
    IFWXIOCompletion *dirs[2]; /* borrowed: dirs[d] completes side d's reads and its chunk's sends */
    const plugin_relay_ops *ops;
    void *arg;
    size_t out_max;            /* output from one chunk, per side; past it the relay closes */
    bool closed, eof[2];
    unsigned pending[2];       /* sends made for side d's last chunk, not yet complete */
    plugin_relay_out out[2];
} plugin_relay;

/* Sets the relay up (nothing is read until plugin_relay_start). */
void plugin_relay_init(plugin_relay *r, IFWXFirewall *fw, IFWXSocket *in, IFWXSocket *ex, IFWXIOCompletion *dir0,
                       IFWXIOCompletion *dir1, const plugin_relay_ops *ops, void *arg, size_t out_max);

/* Starts reading both sides. */
void plugin_relay_start(plugin_relay *r);

/* Queues @p n bytes for side @p target, sent when the chunk being handled is done. */
void plugin_relay_out_add(plugin_relay *r, int target, const void *p, size_t n);

/* Closes both sockets (after ops->closing). Harmless when closed already, or never set up
   (a zeroed relay). */
void plugin_relay_close(plugin_relay *r, const char *why);

/* The body of side @p d's IFWXIOCompletion::CompleteAsyncIO. */
void plugin_relay_complete(plugin_relay *r, int d, int32_t ok, IFWXIOBuffer *buf, uintptr_t ud);

/* Frees the output buffers (the sockets are the filter's to release). */
void plugin_relay_free(plugin_relay *r);

/*
 * Defines a side's IFWXIOCompletion for a relay: `prefix_CompleteAsyncIO`, which hands the
 * completion to plugin_relay_complete until the filter is detached, and FWX_PLUGIN_IO_COMPLETION's
 * `prefix_QueryInterface`, `prefix_AddRef`, `prefix_Release` and `prefix_vtbl` (the completions
 * live inside the data filter and share its count). @p type is the side's struct, with the
 * members `IFWXIOCompletion iface`, `int d` (the side) and @p owner, a pointer to the data
 * filter object, which has the members `plugin_relay relay` and `detached` and whose IUnknown
 * functions are named by @p owner_prefix.
 */
#define PLUGIN_RELAY_COMPLETION(prefix, type, owner, owner_prefix)                                 \
    static fwx_result prefix##_CompleteAsyncIO(IFWXIOCompletion *This, int32_t ok, int32_t err,    \
                                               IFWXIOBuffer *buf, uintptr_t ud,                    \
                                               const struct sockaddr *a, uint32_t al)              \
    {                                                                                              \
        type *side_ = FWX_CONTAINER_OF(This, type, iface);                                         \
        (void)err;                                                                                 \
        (void)a;                                                                                   \
        (void)al;                                                                                  \
        if (!side_->owner->detached)                                                               \
            plugin_relay_complete(&side_->owner->relay, side_->d, ok, buf, ud);                    \
        return FWX_S_OK;                                                                           \
    }                                                                                              \
    FWX_PLUGIN_IO_COMPLETION(prefix, type, owner, owner_prefix, prefix##_CompleteAsyncIO)

#endif /* FWX_PLUGIN_RELAY_H */
