/*
 * fwx - pending socket operations shared by the pump's sockets and the network sockets: one
 * record per Send/SendTo/Recv/Accept, a FIFO of them, and their delivery to the filter.
 * Internal to lib/backends/usermode.
 * SPDX-License-Identifier: MIT
 */
#ifndef FWX_USERMODE_UIO_H
#define FWX_USERMODE_UIO_H

#include "backends/usermode/usermode.h"

#include <sys/socket.h>

typedef enum fwx__uio_kind { FWX__UIO_SEND, FWX__UIO_RECV, FWX__UIO_ACCEPT } fwx__uio_kind;

typedef struct fwx__uio {
    struct fwx__uio *next;
    fwx__uio_kind kind;
    IFWXIOBuffer *buf;            /* +1 */
    IFWXIOCompletion *cpl;        /* +1, may be NULL (Send without notification) */
    IFWXAcceptCompletion *acpl;   /* +1, Accept */
    uintptr_t ud;
    bool core_buf;                /* Recv(NULL): ours, made read-only when it completes */
    uint32_t off;                 /* Send: bytes already taken */
    int32_t ok, err;              /* the outcome, set when it ends */
    bool has_addr;                /* ExternalAddress for UDP Recv / target of SendTo */
    struct sockaddr_storage addr;
    uint32_t addr_len;
    /* Accept */
    IFWXNetworkSocket *listener;  /* borrowed (the owner outlives its queue) */
    IFWXNetworkSocket *accepted;  /* +1, handed over on success */
    struct sockaddr_storage local;
    uint32_t local_len;
    /* libuv requests of the network socket */
    union {
        uv_write_t write;
        uv_udp_send_t udp_send;
    } req;
    void *owner;
} fwx__uio;

typedef struct fwx__uio_queue {
    fwx__uio *head, *tail;
} fwx__uio_queue;

static inline bool fwx__uioq_empty(const fwx__uio_queue *q) { return q->head == NULL; }
static inline void fwx__uioq_push(fwx__uio_queue *q, fwx__uio *op)
{
    op->next = NULL;
    if (q->tail != NULL)
        q->tail->next = op;
    else
        q->head = op;
    q->tail = op;
}
static inline fwx__uio *fwx__uioq_pop(fwx__uio_queue *q)
{
    fwx__uio *op = q->head;
    if (op != NULL) {
        q->head = op->next;
        if (q->head == NULL)
            q->tail = NULL;
        op->next = NULL;
    }
    return op;
}

/* A Send or Recv record: AddRefs buf and cpl. NULL when out of memory. */
fwx__uio *fwx__uio_new(fwx__uio_kind kind, IFWXIOBuffer *buf, IFWXIOCompletion *cpl, uintptr_t ud);
/* A Recv record; with buf NULL, a core buffer of core_size bytes. FWX_E_OUTOFMEMORY. */
fwx_result fwx__uio_new_recv(IFWXIOBuffer *buf, uint32_t core_size, IFWXIOCompletion *cpl, uintptr_t ud,
                             fwx__uio **out);
/* The data of a buffer to send (pointer and data size). False if the buffer will not say. */
bool fwx__uio_data(IFWXIOBuffer *b, uint8_t **p, uint32_t *len);
/* The whole space of a receive buffer (pointer and allocated size). */
bool fwx__uio_space(IFWXIOBuffer *b, uint8_t **p, uint32_t *cap);
/* Ends a Recv with n bytes now in its buffer (0 = EOF): sets the data size, makes a core
   buffer read-only. */
void fwx__uio_recv_done(fwx__uio *op, uint32_t n);
/* Marks an operation failed with a negative errno. */
static inline void fwx__uio_fail(fwx__uio *op, int err)
{
    op->ok = 0;
    op->err = err;
}
/* Takes the pending record out of *slot and ends it: failed with err (a negative errno), or
   as EOF (a zero-length Recv) when err is 0. NULL when nothing was pending; else the caller
   queues it for delivery. */
fwx__uio *fwx__uio_end_pending(fwx__uio **slot, int err);

/* ---- the preambles of the three sockets' methods (the pump's, the datagram path's, the
   network socket's): one set of checks, so that the filters meet one set of answers. */

/* IUnknown::QueryInterface of a socket: IUnknown and IFWXSocket, and IFWXNetworkSocket when
   network (its table starts with IFWXSocket's, so one pointer serves all three). */
fwx_result fwx__uio_sock_query(IFWXSocket *sock, bool network, const fwx_guid *riid, void **ppv);
/* Send's checks and record: FWX_E_INVALIDARG (no buffer), FWX_E_TERMINATING (the socket does
   not take sends: ended, closed or shut down for writing), FWX_E_OUTOFMEMORY. */
fwx_result fwx__uio_send_begin(bool writable, IFWXIOBuffer *buf, IFWXIOCompletion *cpl, uintptr_t ud,
                               fwx__uio **out);
/* Recv's checks and record (a core buffer of core_size bytes for a NULL buf): FWX_E_POINTER (no
   completion), FWX_E_TERMINATING (not live), FWX_E_INVALIDARG (busy: a Recv pending or the
   socket not ready for one; or a buffer with no space), FWX_E_OUTOFMEMORY. */
fwx_result fwx__uio_recv_begin(bool live, bool busy, IFWXIOBuffer *buf, uint32_t core_size, IFWXIOCompletion *cpl,
                               uintptr_t ud, fwx__uio **out);
/* Shutdown's How: SHUT_RD, SHUT_WR or SHUT_RDWR (anything else is FWX_E_INVALIDARG). */
static inline bool fwx__uio_how_valid(int32_t how) { return how == SHUT_RD || how == SHUT_WR || how == SHUT_RDWR; }
static inline bool fwx__uio_how_rd(int32_t how) { return how == SHUT_RD || how == SHUT_RDWR; }
static inline bool fwx__uio_how_wr(int32_t how) { return how == SHUT_WR || how == SHUT_RDWR; }

/* Calls the completion (if any) and frees the record with its references. */
void fwx__uio_deliver(fwx__uio *op);
/* Frees a record without calling anything (setup failed). */
void fwx__uio_free(fwx__uio *op);

#endif /* FWX_USERMODE_UIO_H */
