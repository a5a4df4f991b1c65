/*
 * fwx RTSP filter - the strict RTSP parser and formatter.
 *
 * Pure C11 with no fwx dependency, so that it can be unit-tested, fuzzed and reviewed alone, as
 * the FTP and TFTP parsers are. Nothing here allocates; every buffer has a fixed size and every
 * number is range-checked digit by digit before it is used.
 *
 * What it knows (RFC 2326, RTSP/1.0; RFC 7826, RTSP/2.0, where clients use it):
 * - framing per direction: a message is a start line and headers ending in an empty line, then
 *   exactly Content-Length bytes of body; a '$' where a message would start is an interleaved
 *   binary frame ('$', channel, 16-bit length, data), passed by its length and never read as
 *   RTSP. Lines end in CRLF only; a bare CR or LF, NUL, other control bytes, folded (continued)
 *   header lines, a head over RTSP_HEAD_MAX bytes or RTSP_HEADERS_MAX headers, and a missing,
 *   repeated or out-of-range Content-Length are errors, reported once; the stream is then dead
 *   (the filter answers and closes: a parser that resynchronised could be steered into reading
 *   a body as a request);
 * - the start line of requests and responses, and the headers the filter acts on (CSeq,
 *   Session, Transport, Content-Length);
 * - the Transport header: a list of transport specs with their parameters, kept in order so
 *   that the filter can rewrite client_port, server_port, source and destination and pass the
 *   rest untouched;
 * - the checks the filter makes on them, and formatters for a rewritten Transport value and for
 *   the error responses the filter sends itself.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef FWX_RTSP_PARSE_H
#define FWX_RTSP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* A message's start line and headers, the final empty line included. Real clients and servers
   send a few hundred bytes (gst-rtsp-server, ffmpeg, VLC); 8 KiB leaves room for long URIs. */
#define RTSP_HEAD_MAX 8192
/* Headers in one message. */
#define RTSP_HEADERS_MAX 48
/* The longest body (Content-Length): SDP descriptions and GET_PARAMETER bodies are a few KiB. */
#define RTSP_BODY_MAX (256u * 1024u)
/* Transport specs in one Transport header, and parameters in one spec. */
#define RTSP_TRANSPORTS_MAX 8
#define RTSP_PARAMS_MAX 16
/* A formatted Transport value, or an error response. */
#define RTSP_TRANSPORT_TEXT_MAX 1024

/* ---- results ------------------------------------------------------------------------------ */

typedef enum rtsp_status {
    RTSP_P_OK = 0,
    /* framing and syntax: 400 Bad Request, then close */
    RTSP_P_BARE_CR,          /* a CR not followed by LF */
    RTSP_P_BARE_LF,          /* an LF not preceded by CR */
    RTSP_P_NUL,              /* a NUL byte in the head */
    RTSP_P_CONTROL,          /* another control byte in the head (HT is allowed in values) */
    RTSP_P_HEAD_TOO_LONG,    /* start line and headers over RTSP_HEAD_MAX */
    RTSP_P_TOO_MANY_HEADERS, /* over RTSP_HEADERS_MAX */
    RTSP_P_FOLDED,           /* a header line that starts with a space or tab (continuation) */
    RTSP_P_START_LINE,       /* neither "METHOD URI RTSP/x.y" nor "RTSP/x.y CODE reason" */
    RTSP_P_VERSION,          /* not RTSP/1.0 or RTSP/2.0 */
    RTSP_P_HEADER,           /* a header line without a token name and ':' */
    RTSP_P_DUPLICATE,        /* CSeq, Session, Transport or Content-Length given twice */
    RTSP_P_CONTENT_LENGTH,   /* not decimal digits, or over RTSP_BODY_MAX */
    /* Transport: 461 Unsupported Transport */
    RTSP_P_TRANSPORT,         /* Transport syntax: empty spec or parameter, bad profile, bad number */
    RTSP_P_TOO_MANY_SPECS,    /* over RTSP_TRANSPORTS_MAX specs or RTSP_PARAMS_MAX parameters */
    RTSP_P_PORT_RANGE,        /* a port range that is not two consecutive ports, lowest even */
    RTSP_P_PORT_PRIVILEGED,   /* a port under 1024 */
    RTSP_P_DESTINATION,       /* destination= names another host than the client */
    RTSP_P_SOURCE,            /* source= names another host than the server */
    RTSP_P_MULTICAST,         /* multicast, which the filter does not open */
    RTSP_P_NO_CLIENT_PORT,    /* a UDP unicast spec without client_port */
    RTSP_P_REPLY_MISMATCH,    /* the reply's spec is not one the request offered */
    RTSP_P_INTERLEAVED,       /* interleaved= not one or two channels 0..255, consecutive */
} rtsp_status;

/* A human-readable reason ("bare LF inside a line", ...). Never NULL. */
const char *rtsp_status_text(rtsp_status st);

/* The RTSP status code the filter answers a client with for @p st (400 or 461). */
int rtsp_status_code(rtsp_status st);

/* ---- messages ----------------------------------------------------------------------------- */

/* A header, as spans into the head it was parsed from. */
typedef struct rtsp_header {
    const char *name;
    size_t name_len;
    const char *value; /* leading and trailing blanks removed */
    size_t value_len;
} rtsp_header;

/* A parsed head. Spans point into the bytes given to rtsp_parse_head (borrowed). */
typedef struct rtsp_msg {
    bool response;
    int version;       /* 10 or 20 */
    const char *method; /* request: the method token */
    size_t method_len;
    const char *uri;    /* request: the URI, as given */
    size_t uri_len;
    int code;           /* response: 100..999 */
    size_t n_headers;
    rtsp_header headers[RTSP_HEADERS_MAX];
    int cseq;           /* index into headers, -1: none */
    int session;
    int transport;
    uint32_t content_length; /* 0 when absent */
} rtsp_msg;

/* Parses a complete head (start line, headers, the final CRLF CRLF included). */
rtsp_status rtsp_parse_head(const char *head, size_t len, rtsp_msg *m);

/* True when the request's method is @p method (case-sensitive, as RTSP methods are). */
bool rtsp_is_method(const rtsp_msg *m, const char *method);

/* The message's CSeq into *out; false when it has none (rtsp_parse_head accepted only 1 to 9
   digits, so it always fits). */
bool rtsp_msg_cseq(const rtsp_msg *m, uint32_t *out);

/* The longest session id rtsp_parse_session takes (RFC 7826 allows 256). */
#define RTSP_SESSION_ID_MAX 256

/* A Session header value, `id[;timeout=N][;other=...]` (RFC 2326 12.37, RFC 7826 18.49):
   *id_len is the id's length (it starts the value), *timeout_s the timeout= seconds, 0 when
   none is given. False when the value is not of that form: an empty or overlong id, a
   control or blank byte in it, an empty parameter name, a timeout given twice, not 1 to 9
   digits or 0 (then *timeout_s is 0). */
bool rtsp_parse_session(const char *value, size_t len, size_t *id_len, uint32_t *timeout_s);

/* ---- framing ------------------------------------------------------------------------------ */

/* What rtsp_stream_feed found. */
typedef enum rtsp_event {
    RTSP_EV_MORE = 0,  /* everything given was taken into the head buffer: feed more */
    RTSP_EV_HEAD,      /* a complete head: stream->head / head_len, parsed in stream->msg */
    RTSP_EV_PASS,      /* `*pass_len` bytes at `*pass` (inside the input) to pass untouched:
                          a body, or an interleaved frame (its 4-byte header included) */
    RTSP_EV_ERROR,     /* stream->error says what; the stream stays in error from now on */
} rtsp_event;

typedef enum rtsp_state {
    RTSP_S_START = 0, /* between messages */
    RTSP_S_HEAD,      /* inside a head */
    RTSP_S_BODY,      /* passing a body */
    RTSP_S_FRAME_HDR, /* inside an interleaved frame's 4-byte header */
    RTSP_S_FRAME,     /* passing an interleaved frame's data */
    RTSP_S_ERROR,
} rtsp_state;

/* One direction of one control connection. Zero it (or rtsp_stream_init) to start. */
typedef struct rtsp_stream {
    rtsp_state state;
    char head[RTSP_HEAD_MAX];
    size_t head_len;
    uint8_t frame_hdr[4];
    size_t frame_hdr_len;
    uint32_t remaining; /* body or frame bytes still to pass */
    rtsp_status error;
    rtsp_msg msg;       /* the last head's parse */
} rtsp_stream;

void rtsp_stream_init(rtsp_stream *s);

/*
 * Takes bytes from @p p / @p n up to the next event and returns how many it took (never more
 * than @p n; 0 only when @p n is 0 or the stream is in error). For RTSP_EV_PASS, *pass and
 * *pass_len name bytes inside the input (a frame header split across calls is given back from
 * the stream's own copy). A message split over any number of calls gives the same events as one
 * fed whole. The head of RTSP_EV_HEAD stays valid until the next call.
 */
size_t rtsp_stream_feed(rtsp_stream *s, const uint8_t *p, size_t n, rtsp_event *ev, const uint8_t **pass,
                        size_t *pass_len);

/* ---- Transport ---------------------------------------------------------------------------- */

typedef struct rtsp_param {
    const char *name;
    size_t name_len;
    const char *value; /* NULL: a bare parameter such as "unicast" */
    size_t value_len;
} rtsp_param;

/* One transport spec. Spans point into the header value (borrowed). */
typedef struct rtsp_transport {
    const char *profile;   /* "RTP/AVP", "RTP/AVP/UDP", "RTP/AVP/TCP", "RTP/AVPF", ... as given */
    size_t profile_len;
    bool tcp;              /* the lower transport is TCP */
    bool multicast;        /* "multicast" given ("unicast" is the default when neither is) */
    size_t n_params;
    rtsp_param params[RTSP_PARAMS_MAX];
    uint16_t client_port[2]; /* when n_client_port > 0 */
    int n_client_port;       /* 0, 1 or 2 */
    uint16_t server_port[2];
    int n_server_port;
    uint8_t interleaved[2];
    int n_interleaved;
    int destination;       /* index into params, -1: none */
    int source;
} rtsp_transport;

/* Parses a Transport header value into at most RTSP_TRANSPORTS_MAX specs. Syntax only: the
   checks below decide what a filter may open. */
rtsp_status rtsp_parse_transport(const char *value, size_t len, rtsp_transport *specs, size_t *n_specs);

/* A client's spec, as the filter accepts it for a client at @p client: UDP unicast with
   client_port two consecutive ports, the lowest even and >= 1024, and no destination= other
   than the client's own address; TCP with interleaved= one or two consecutive channels. */
rtsp_status rtsp_check_request_spec(const rtsp_transport *t, const struct sockaddr *client);

/* A server's reply spec against the specs the request offered: the same lower transport and
   the same client_port (or interleaved channels) as one of them, server_port (when given) two
   consecutive ports >= 1024 with the lowest even, and no source= other than @p server. On
   success *which is the index of the matched request spec. */
rtsp_status rtsp_check_reply_spec(const rtsp_transport *reply, const rtsp_transport *req, size_t n_req,
                                  const struct sockaddr *server, size_t *which);

/* What a rewritten spec says instead. A NULL string or a zero port leaves that parameter as it
   was; `drop_source` and `drop_destination` remove those parameters. */
typedef struct rtsp_rewrite {
    uint16_t client_port;  /* the new lowest client port (the next one follows) */
    uint16_t server_port;  /* the new lowest server port */
    const char *source;
    const char *destination;
    bool drop_source;
    bool drop_destination;
} rtsp_rewrite;

/* Writes @p t with @p rw applied, NUL-terminated, into @p out. Returns the length, or 0 when
   it would not fit in @p cap. Parameters other than the rewritten ones keep their text. */
size_t rtsp_fmt_transport(char *out, size_t cap, const rtsp_transport *t, const rtsp_rewrite *rw);

/* Writes head @p m (parsed from @p head / @p head_len) with its Transport value replaced by
   @p transport / @p tlen, every other line as it came, NUL-terminated, into @p out. The value
   must hold no CR or LF (rtsp_fmt_transport's never does). Returns the length, or 0 when the
   head has no Transport, the value holds CR or LF, or the result would not fit in @p cap (pass
   RTSP_HEAD_MAX + 1 so that the peer's parser, if as strict as this one, takes the result). */
size_t rtsp_fmt_head(char *out, size_t cap, const char *head, size_t head_len, const rtsp_msg *m,
                     const char *transport, size_t tlen);

/* An error response for a request: "RTSP/1.0 CODE Reason\r\nCSeq: N\r\n\r\n" (CSeq when the
   request had a valid one). Returns the length, or 0 when it would not fit. */
size_t rtsp_fmt_error(char *out, size_t cap, int code, const rtsp_msg *request);

#endif /* FWX_RTSP_PARSE_H */
