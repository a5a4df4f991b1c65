/*
 * fwx RTSP filter - the strict RTSP parser and formatter (see rtsp_parse.h).
 * SPDX-License-Identifier: MIT
 */
#include "rtsp_parse.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

const char *rtsp_status_text(rtsp_status st)
{
    switch (st) {
    case RTSP_P_OK: return "ok";
    case RTSP_P_BARE_CR: return "bare CR inside a line";
    case RTSP_P_BARE_LF: return "bare LF inside a line";
    case RTSP_P_NUL: return "NUL byte in the head";
    case RTSP_P_CONTROL: return "control byte in the head";
    case RTSP_P_HEAD_TOO_LONG: return "start line and headers longer than 8192 bytes";
    case RTSP_P_TOO_MANY_HEADERS: return "too many headers";
    case RTSP_P_FOLDED: return "folded (continued) header line";
    case RTSP_P_START_LINE: return "malformed start line";
    case RTSP_P_VERSION: return "not RTSP/1.0 or RTSP/2.0";
    case RTSP_P_HEADER: return "malformed header line";
    case RTSP_P_DUPLICATE: return "CSeq, Session, Transport or Content-Length repeated";
    case RTSP_P_CONTENT_LENGTH: return "bad or oversized Content-Length";
    case RTSP_P_TRANSPORT: return "malformed Transport";
    case RTSP_P_TOO_MANY_SPECS: return "too many transport specs or parameters";
    case RTSP_P_PORT_RANGE: return "port range not two consecutive ports with the lowest even";
    case RTSP_P_PORT_PRIVILEGED: return "privileged port";
    case RTSP_P_DESTINATION: return "destination is not the client";
    case RTSP_P_SOURCE: return "source is not the server";
    case RTSP_P_MULTICAST: return "multicast transport";
    case RTSP_P_NO_CLIENT_PORT: return "UDP transport without client_port";
    case RTSP_P_REPLY_MISMATCH: return "reply transport matches no requested one";
    case RTSP_P_INTERLEAVED: return "bad interleaved channels";
    }
    return "unknown status";
}

int rtsp_status_code(rtsp_status st)
{
    return st >= RTSP_P_TRANSPORT ? 461 : 400;
}

/* ---- small lexical helpers ------------------------------------------------------------------ */

/* RFC 2326 / RFC 7230 token characters. */
static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool span_eq_ci(const char *p, size_t n, const char *word)
{
    return strlen(word) == n && strncasecmp(p, word, n) == 0;
}

/* Decimal digits only, at most @p max_digits, value at most @p max. */
static bool parse_uint(const char *p, size_t n, size_t max_digits, uint32_t max, uint32_t *out)
{
    if (n == 0 || n > max_digits)
        return false;
    uint32_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (uint32_t)(p[i] - '0');
    }
    if (v > max)
        return false;
    *out = v;
    return true;
}

/* ---- heads ---------------------------------------------------------------------------------- */

/* Checks every byte of a head: lines end in CRLF only, no NUL, no control byte but HT. */
static rtsp_status check_bytes(const char *h, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)h[i];
        if (c == '\r') {
            if (i + 1 >= len || h[i + 1] != '\n')
                return RTSP_P_BARE_CR;
        } else if (c == '\n') {
            if (i == 0 || h[i - 1] != '\r')
                return RTSP_P_BARE_LF;
        } else if (c == 0) {
            return RTSP_P_NUL;
        } else if ((c < 0x20 && c != '\t') || c == 0x7f) {
            return RTSP_P_CONTROL;
        }
    }
    return RTSP_P_OK;
}

/* "RTSP/1.0" or "RTSP/2.0" exactly. */
static bool parse_version(const char *p, size_t n, int *version)
{
    if (n != 8 || memcmp(p, "RTSP/", 5) != 0 || p[6] != '.' || p[7] != '0')
        return false;
    if (p[5] == '1')
        *version = 10;
    else if (p[5] == '2')
        *version = 20;
    else
        return false;
    return true;
}

static rtsp_status parse_start_line(const char *l, size_t n, rtsp_msg *m)
{
    if (n >= 5 && memcmp(l, "RTSP/", 5) == 0) {
        /* RTSP/x.y SP 3DIGIT SP reason */
        if (n < 13 || l[8] != ' ' || l[12] != ' ')
            return n >= 8 && !parse_version(l, 8, &m->version) ? RTSP_P_VERSION : RTSP_P_START_LINE;
        if (!parse_version(l, 8, &m->version))
            return RTSP_P_VERSION;
        uint32_t code;
        if (!parse_uint(l + 9, 3, 3, 999, &code) || code < 100)
            return RTSP_P_START_LINE;
        m->response = true;
        m->code = (int)code;
        return RTSP_P_OK;
    }
    /* METHOD SP URI SP RTSP/x.y, single spaces */
    size_t i = 0;
    while (i < n && is_tchar((unsigned char)l[i]))
        i++;
    if (i == 0 || i > 32 || i >= n || l[i] != ' ')
        return RTSP_P_START_LINE;
    m->method = l;
    m->method_len = i;
    size_t u = ++i;
    while (i < n && (unsigned char)l[i] > 0x20 && (unsigned char)l[i] < 0x7f)
        i++;
    if (i == u || i >= n || l[i] != ' ')
        return RTSP_P_START_LINE;
    m->uri = l + u;
    m->uri_len = i - u;
    i++;
    if (!parse_version(l + i, n - i, &m->version))
        return n - i >= 5 && memcmp(l + i, "RTSP/", 5) == 0 ? RTSP_P_VERSION : RTSP_P_START_LINE;
    m->response = false;
    return RTSP_P_OK;
}

/* CSeq, Session and Transport: remembered by index, each at most once. */
static rtsp_status note_header(rtsp_msg *m, int idx)
{
    const rtsp_header *h = &m->headers[idx];
    int *slot = NULL;
    if (span_eq_ci(h->name, h->name_len, "CSeq"))
        slot = &m->cseq;
    else if (span_eq_ci(h->name, h->name_len, "Session"))
        slot = &m->session;
    else if (span_eq_ci(h->name, h->name_len, "Transport"))
        slot = &m->transport;
    if (slot != NULL) {
        if (*slot >= 0)
            return RTSP_P_DUPLICATE;
        *slot = idx;
    }
    return RTSP_P_OK;
}

rtsp_status rtsp_parse_head(const char *head, size_t len, rtsp_msg *m)
{
    memset(m, 0, sizeof *m);
    m->cseq = m->session = m->transport = -1;
    if (len > RTSP_HEAD_MAX)
        return RTSP_P_HEAD_TOO_LONG;
    if (len < 4 || memcmp(head + len - 4, "\r\n\r\n", 4) != 0)
        return RTSP_P_START_LINE;
    rtsp_status st = check_bytes(head, len);
    if (st != RTSP_P_OK)
        return st;

    const char *p = head, *end = head + len - 2; /* the final CRLF ends the header block */
    const char *eol = memchr(p, '\r', (size_t)(end - p));
    st = parse_start_line(p, (size_t)(eol - p), m);
    if (st != RTSP_P_OK)
        return st;
    bool have_length = false;
    for (p = eol + 2; p < end; p = eol + 2) {
        eol = memchr(p, '\r', (size_t)(end - p));
        size_t n = (size_t)(eol - p);
        if (p[0] == ' ' || p[0] == '\t')
            return RTSP_P_FOLDED;
        size_t i = 0;
        while (i < n && is_tchar((unsigned char)p[i]))
            i++;
        if (i == 0 || i >= n || p[i] != ':')
            return RTSP_P_HEADER;
        if (m->n_headers == RTSP_HEADERS_MAX)
            return RTSP_P_TOO_MANY_HEADERS;
        rtsp_header *h = &m->headers[m->n_headers];
        h->name = p;
        h->name_len = i;
        size_t v = i + 1, w = n;
        while (v < w && (p[v] == ' ' || p[v] == '\t'))
            v++;
        while (w > v && (p[w - 1] == ' ' || p[w - 1] == '\t'))
            w--;
        h->value = p + v;
        h->value_len = w - v;
        int idx = (int)m->n_headers++;
        if (span_eq_ci(h->name, h->name_len, "Content-Length")) {
            uint32_t cl;
            if (have_length)
                return RTSP_P_DUPLICATE;
            have_length = true;
            if (!parse_uint(h->value, h->value_len, 7, RTSP_BODY_MAX, &cl))
                return RTSP_P_CONTENT_LENGTH;
            m->content_length = cl;
            continue;
        }
        st = note_header(m, idx);
        if (st != RTSP_P_OK)
            return st;
    }
    if (m->cseq >= 0) {
        uint32_t v;
        const rtsp_header *h = &m->headers[m->cseq];
        if (!parse_uint(h->value, h->value_len, 9, 999999999u, &v))
            return RTSP_P_HEADER;
    }
    return RTSP_P_OK;
}

bool rtsp_is_method(const rtsp_msg *m, const char *method)
{
    return !m->response && strlen(method) == m->method_len && memcmp(m->method, method, m->method_len) == 0;
}

bool rtsp_msg_cseq(const rtsp_msg *m, uint32_t *out)
{
    if (m->cseq < 0)
        return false;
    const rtsp_header *h = &m->headers[m->cseq];
    return parse_uint(h->value, h->value_len, 9, 999999999u, out);
}

bool rtsp_parse_session(const char *value, size_t len, size_t *id_len, uint32_t *timeout_s)
{
    size_t i = 0;
    *id_len = 0;
    *timeout_s = 0;
    /* The id: visible characters up to the first ';' (RFC 7826's safe set and more: servers
       are not all strict, and the filter only compares it). */
    while (i < len && value[i] != ';') {
        unsigned char ch = (unsigned char)value[i];
        if (ch <= 0x20 || ch >= 0x7f)
            return false;
        i++;
    }
    if (i == 0 || i > RTSP_SESSION_ID_MAX)
        return false;
    *id_len = i;
    bool have_timeout = false;
    uint32_t timeout = 0;
    while (i < len) {
        i++; /* the ';' */
        while (i < len && (value[i] == ' ' || value[i] == '\t'))
            i++;
        size_t name = i;
        while (i < len && is_tchar((unsigned char)value[i]))
            i++;
        size_t name_len = i - name;
        if (name_len == 0)
            return false;
        const char *v = NULL;
        size_t v_len = 0;
        if (i < len && value[i] == '=') {
            v = value + ++i;
            while (i < len && value[i] != ';' && value[i] != ' ' && value[i] != '\t')
                i++;
            v_len = (size_t)(value + i - v);
        }
        while (i < len && (value[i] == ' ' || value[i] == '\t'))
            i++;
        if (i < len && value[i] != ';')
            return false;
        if (span_eq_ci(value + name, name_len, "timeout")) {
            uint32_t t;
            if (have_timeout || v == NULL || !parse_uint(v, v_len, 9, 999999999u, &t) || t == 0)
                return false;
            have_timeout = true;
            timeout = t;
        }
    }
    *timeout_s = timeout;
    return true;
}

/* ---- framing -------------------------------------------------------------------------------- */

void rtsp_stream_init(rtsp_stream *s)
{
    memset(s, 0, sizeof *s);
}

static size_t stream_fail(rtsp_stream *s, rtsp_status st, size_t taken, rtsp_event *ev)
{
    s->state = RTSP_S_ERROR;
    s->error = st;
    *ev = RTSP_EV_ERROR;
    return taken;
}

size_t rtsp_stream_feed(rtsp_stream *s, const uint8_t *p, size_t n, rtsp_event *ev, const uint8_t **pass,
                        size_t *pass_len)
{
    *ev = RTSP_EV_MORE;
    *pass = NULL;
    *pass_len = 0;
    if (s->state == RTSP_S_ERROR) {
        *ev = RTSP_EV_ERROR;
        return 0;
    }
    size_t i = 0;
    while (i < n) {
        switch (s->state) {
        case RTSP_S_START:
            if (p[i] == '$') {
                s->state = RTSP_S_FRAME_HDR;
                s->frame_hdr_len = 0;
            } else {
                s->state = RTSP_S_HEAD;
                s->head_len = 0;
            }
            break;
        case RTSP_S_FRAME_HDR:
            s->frame_hdr[s->frame_hdr_len++] = p[i++];
            if (s->frame_hdr_len == 4) {
                s->remaining = (uint32_t)s->frame_hdr[2] << 8 | s->frame_hdr[3];
                s->state = s->remaining > 0 ? RTSP_S_FRAME : RTSP_S_START;
                *ev = RTSP_EV_PASS;
                *pass = s->frame_hdr;
                *pass_len = 4;
                return i;
            }
            break;
        case RTSP_S_BODY:
        case RTSP_S_FRAME: {
            size_t take = n - i < s->remaining ? n - i : s->remaining;
            s->remaining -= (uint32_t)take;
            if (s->remaining == 0)
                s->state = RTSP_S_START;
            *ev = RTSP_EV_PASS;
            *pass = p + i;
            *pass_len = take;
            return i + take;
        }
        case RTSP_S_HEAD: {
            unsigned char c = p[i++];
            /* Byte checks as they come, so that a peer that never ends its head is answered
               for what it sent, not only when the buffer is full. */
            if (s->head_len > 0 && s->head[s->head_len - 1] == '\r' && c != '\n')
                return stream_fail(s, RTSP_P_BARE_CR, i, ev);
            if (c == '\n' && (s->head_len == 0 || s->head[s->head_len - 1] != '\r'))
                return stream_fail(s, RTSP_P_BARE_LF, i, ev);
            if (c == 0)
                return stream_fail(s, RTSP_P_NUL, i, ev);
            if ((c < 0x20 && c != '\t' && c != '\r' && c != '\n') || c == 0x7f)
                return stream_fail(s, RTSP_P_CONTROL, i, ev);
            if (s->head_len == RTSP_HEAD_MAX)
                return stream_fail(s, RTSP_P_HEAD_TOO_LONG, i, ev);
            s->head[s->head_len++] = (char)c;
            if (s->head_len == 2 && s->head[0] == '\r') {
                /* An empty line between messages (a keep-alive some clients send): dropped. */
                s->state = RTSP_S_START;
                break;
            }
            if (c == '\n' && s->head_len >= 4 && memcmp(s->head + s->head_len - 4, "\r\n\r\n", 4) == 0) {
                rtsp_status st = rtsp_parse_head(s->head, s->head_len, &s->msg);
                if (st != RTSP_P_OK)
                    return stream_fail(s, st, i, ev);
                s->remaining = s->msg.content_length;
                s->state = s->remaining > 0 ? RTSP_S_BODY : RTSP_S_START;
                *ev = RTSP_EV_HEAD;
                return i;
            }
            break;
        }
        case RTSP_S_ERROR:
            *ev = RTSP_EV_ERROR;
            return i;
        }
    }
    return i;
}

/* ---- Transport ------------------------------------------------------------------------------ */

/* "a" or "a-b", each at most @p max. */
static bool parse_range(const char *v, size_t n, uint32_t max, uint32_t out[2], int *count)
{
    const char *dash = memchr(v, '-', n);
    if (dash == NULL) {
        *count = 1;
        return parse_uint(v, n, 5, max, &out[0]);
    }
    *count = 2;
    return parse_uint(v, (size_t)(dash - v), 5, max, &out[0]) &&
           parse_uint(dash + 1, n - (size_t)(dash - v) - 1, 5, max, &out[1]);
}

/* RTP/<PROFILE>[/UDP|/TCP], PROFILE in letters. */
static bool parse_profile(rtsp_transport *t, const char *p, size_t n)
{
    if (n < 5 || strncasecmp(p, "RTP/", 4) != 0)
        return false;
    size_t i = 4;
    while (i < n && ((p[i] >= 'A' && p[i] <= 'Z') || (p[i] >= 'a' && p[i] <= 'z')))
        i++;
    if (i == 4 || i - 4 > 8)
        return false;
    t->tcp = false;
    if (i == n)
        return true;
    if (span_eq_ci(p + i, n - i, "/UDP"))
        return true;
    if (span_eq_ci(p + i, n - i, "/TCP")) {
        t->tcp = true;
        return true;
    }
    return false;
}

static rtsp_status note_param(rtsp_transport *t, int idx)
{
    const rtsp_param *pa = &t->params[idx];
    uint32_t r[2] = {0, 0};
    int cnt = 0;
    if (span_eq_ci(pa->name, pa->name_len, "unicast") || span_eq_ci(pa->name, pa->name_len, "multicast")) {
        if (pa->value != NULL)
            return RTSP_P_TRANSPORT;
        bool multi = pa->name_len == 9;
        for (int j = 0; j < idx; j++)
            if (span_eq_ci(t->params[j].name, t->params[j].name_len, "unicast") ||
                span_eq_ci(t->params[j].name, t->params[j].name_len, "multicast"))
                return RTSP_P_TRANSPORT;
        t->multicast = multi;
        return RTSP_P_OK;
    }
    bool client = span_eq_ci(pa->name, pa->name_len, "client_port");
    bool server = span_eq_ci(pa->name, pa->name_len, "server_port");
    bool inter = span_eq_ci(pa->name, pa->name_len, "interleaved");
    if (client || server || inter) {
        int *n_out = client ? &t->n_client_port : server ? &t->n_server_port : &t->n_interleaved;
        if (pa->value == NULL || *n_out != 0 || !parse_range(pa->value, pa->value_len, inter ? 255 : 65535, r, &cnt))
            return RTSP_P_TRANSPORT;
        for (int k = 0; k < cnt; k++) {
            if (client)
                t->client_port[k] = (uint16_t)r[k];
            else if (server)
                t->server_port[k] = (uint16_t)r[k];
            else
                t->interleaved[k] = (uint8_t)r[k];
        }
        *n_out = cnt;
        return RTSP_P_OK;
    }
    bool dest = span_eq_ci(pa->name, pa->name_len, "destination");
    bool src = span_eq_ci(pa->name, pa->name_len, "source");
    if (dest || src) {
        int *slot = dest ? &t->destination : &t->source;
        /* destination without a value means "the client" in RFC 2326; it opens nothing new. */
        if (*slot >= 0 || (src && pa->value == NULL) || (pa->value != NULL && pa->value_len == 0))
            return RTSP_P_TRANSPORT;
        *slot = idx;
    }
    return RTSP_P_OK;
}

rtsp_status rtsp_parse_transport(const char *v, size_t len, rtsp_transport *specs, size_t *n_specs)
{
    *n_specs = 0;
    size_t i = 0;
    for (;;) {
        while (i < len && (v[i] == ' ' || v[i] == '\t'))
            i++;
        if (*n_specs == RTSP_TRANSPORTS_MAX)
            return RTSP_P_TOO_MANY_SPECS;
        rtsp_transport *t = &specs[(*n_specs)++];
        memset(t, 0, sizeof *t);
        t->destination = t->source = -1;
        size_t s = i;
        while (i < len && v[i] != ';' && v[i] != ',' && v[i] != ' ' && v[i] != '\t')
            i++;
        if (!parse_profile(t, v + s, i - s))
            return RTSP_P_TRANSPORT;
        t->profile = v + s;
        t->profile_len = i - s;
        while (i < len && v[i] == ';') {
            i++;
            size_t ns = i;
            while (i < len && is_tchar((unsigned char)v[i]))
                i++;
            if (i == ns)
                return RTSP_P_TRANSPORT;
            if (t->n_params == RTSP_PARAMS_MAX)
                return RTSP_P_TOO_MANY_SPECS;
            rtsp_param *pa = &t->params[t->n_params];
            pa->name = v + ns;
            pa->name_len = i - ns;
            pa->value = NULL;
            pa->value_len = 0;
            if (i < len && v[i] == '=') {
                i++;
                size_t vs = i;
                if (i < len && v[i] == '"') {
                    const char *q = memchr(v + i + 1, '"', len - i - 1);
                    if (q == NULL)
                        return RTSP_P_TRANSPORT;
                    i = (size_t)(q - v) + 1;
                } else {
                    while (i < len && v[i] != ';' && v[i] != ',' && v[i] != ' ' && v[i] != '\t' && v[i] != '"')
                        i++;
                }
                pa->value = v + vs;
                pa->value_len = i - vs;
                if (pa->value_len == 0)
                    return RTSP_P_TRANSPORT;
            }
            rtsp_status st = note_param(t, (int)t->n_params++);
            if (st != RTSP_P_OK)
                return st;
        }
        while (i < len && (v[i] == ' ' || v[i] == '\t'))
            i++;
        if (i == len)
            return RTSP_P_OK;
        if (v[i] != ',')
            return RTSP_P_TRANSPORT;
        i++;
    }
}

/* Does the parameter's value name the host at @p sa? Only a literal address can. */
static bool param_is_host(const rtsp_param *pa, const struct sockaddr *sa)
{
    char buf[INET6_ADDRSTRLEN + 2];
    const char *v = pa->value;
    size_t n = pa->value_len;
    if (n >= 2 && v[0] == '[' && v[n - 1] == ']') {
        v++;
        n -= 2;
    }
    if (n == 0 || n >= sizeof buf)
        return false;
    memcpy(buf, v, n);
    buf[n] = '\0';
    if (sa->sa_family == AF_INET) {
        struct in_addr a;
        return inet_pton(AF_INET, buf, &a) == 1 &&
               memcmp(&a, &((const struct sockaddr_in *)sa)->sin_addr, sizeof a) == 0;
    }
    if (sa->sa_family == AF_INET6) {
        struct in6_addr a;
        const struct in6_addr *mine = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        struct in_addr a4;
        if (inet_pton(AF_INET6, buf, &a) == 1)
            return memcmp(&a, mine, sizeof a) == 0;
        /* an IPv4 literal for a v4-mapped peer */
        return IN6_IS_ADDR_V4MAPPED(mine) && inet_pton(AF_INET, buf, &a4) == 1 &&
               memcmp(&a4, &mine->s6_addr[12], 4) == 0;
    }
    return false;
}

/* Two consecutive ports, the lowest even (RTP, then RTCP), none under 1024. */
static rtsp_status check_pair(const uint16_t port[2], int n)
{
    if (n != 2 || port[0] % 2 != 0 || port[1] != port[0] + 1)
        return RTSP_P_PORT_RANGE;
    if (port[0] < 1024)
        return RTSP_P_PORT_PRIVILEGED;
    return RTSP_P_OK;
}

static rtsp_status check_channels(const rtsp_transport *t)
{
    if (t->n_interleaved == 2 && t->interleaved[1] != t->interleaved[0] + 1)
        return RTSP_P_INTERLEAVED;
    return RTSP_P_OK;
}

rtsp_status rtsp_check_request_spec(const rtsp_transport *t, const struct sockaddr *client)
{
    if (t->multicast)
        return RTSP_P_MULTICAST;
    if (t->destination >= 0 && t->params[t->destination].value != NULL &&
        !param_is_host(&t->params[t->destination], client))
        return RTSP_P_DESTINATION;
    if (t->tcp)
        return check_channels(t);
    if (t->n_client_port == 0)
        return RTSP_P_NO_CLIENT_PORT;
    return check_pair(t->client_port, t->n_client_port);
}

static bool same_ports(const uint16_t a[2], int na, const uint16_t b[2], int nb)
{
    return na == nb && a[0] == b[0] && (na < 2 || a[1] == b[1]);
}

rtsp_status rtsp_check_reply_spec(const rtsp_transport *reply, const rtsp_transport *req, size_t n_req,
                                  const struct sockaddr *server, size_t *which)
{
    if (reply->multicast)
        return RTSP_P_MULTICAST;
    size_t i;
    for (i = 0; i < n_req; i++) {
        const rtsp_transport *q = &req[i];
        if (q->tcp != reply->tcp || q->multicast)
            continue;
        if (reply->tcp) {
            if (q->n_interleaved == 0 ||
                (reply->n_interleaved == q->n_interleaved && reply->interleaved[0] == q->interleaved[0] &&
                 (q->n_interleaved < 2 || reply->interleaved[1] == q->interleaved[1])))
                break;
        } else if (same_ports(reply->client_port, reply->n_client_port, q->client_port, q->n_client_port)) {
            break;
        }
    }
    if (i == n_req)
        return RTSP_P_REPLY_MISMATCH;
    if (reply->source >= 0 && !param_is_host(&reply->params[reply->source], server))
        return RTSP_P_SOURCE;
    if (reply->tcp) {
        rtsp_status st = check_channels(reply);
        if (st != RTSP_P_OK)
            return st;
    } else if (reply->n_server_port > 0) {
        rtsp_status st = check_pair(reply->server_port, reply->n_server_port);
        if (st != RTSP_P_OK)
            return st;
    }
    *which = i;
    return RTSP_P_OK;
}

/* ---- formatters ----------------------------------------------------------------------------- */

typedef struct out_buf {
    char *p;
    size_t cap, len;
    bool over;
} out_buf;

static void put(out_buf *o, const char *s, size_t n)
{
    if (o->over || o->cap - o->len <= n) { /* keep a byte for the NUL */
        o->over = true;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
    o->p[o->len] = '\0';
}

static void put_str(out_buf *o, const char *s)
{
    put(o, s, strlen(s));
}

static void put_pair(out_buf *o, uint16_t lo)
{
    char b[16];
    int n = snprintf(b, sizeof b, "%u-%u", (unsigned)lo, (unsigned)lo + 1u);
    put(o, b, (size_t)n);
}

size_t rtsp_fmt_transport(char *out, size_t cap, const rtsp_transport *t, const rtsp_rewrite *rw)
{
    if (cap == 0)
        return 0;
    out_buf o = {out, cap, 0, false};
    out[0] = '\0';
    put(&o, t->profile, t->profile_len);
    for (size_t i = 0; i < t->n_params; i++) {
        const rtsp_param *pa = &t->params[i];
        bool client = span_eq_ci(pa->name, pa->name_len, "client_port");
        bool server = span_eq_ci(pa->name, pa->name_len, "server_port");
        bool is_src = (int)i == t->source, is_dst = (int)i == t->destination;
        if ((is_src && rw->drop_source) || (is_dst && rw->drop_destination))
            continue;
        put(&o, ";", 1);
        put(&o, pa->name, pa->name_len);
        if (client && rw->client_port != 0) {
            put(&o, "=", 1);
            put_pair(&o, rw->client_port);
        } else if (server && rw->server_port != 0) {
            put(&o, "=", 1);
            put_pair(&o, rw->server_port);
        } else if (is_src && rw->source != NULL) {
            put(&o, "=", 1);
            put_str(&o, rw->source);
        } else if (is_dst && rw->destination != NULL) {
            put(&o, "=", 1);
            put_str(&o, rw->destination);
        } else if (pa->value != NULL) {
            put(&o, "=", 1);
            put(&o, pa->value, pa->value_len);
        }
    }
    if (o.over) {
        out[0] = '\0';
        return 0;
    }
    return o.len;
}

size_t rtsp_fmt_head(char *out, size_t cap, const char *head, size_t head_len, const rtsp_msg *m,
                     const char *transport, size_t tlen)
{
    if (cap == 0)
        return 0;
    out[0] = '\0';
    if (m->transport < 0 || memchr(transport, '\r', tlen) != NULL || memchr(transport, '\n', tlen) != NULL)
        return 0;
    const char *eol = memchr(head, '\r', head_len);
    if (eol == NULL)
        return 0;
    out_buf o = {out, cap, 0, false};
    put(&o, head, (size_t)(eol - head) + 2); /* the start line, as it came */
    for (size_t i = 0; i < m->n_headers; i++) {
        const rtsp_header *h = &m->headers[i];
        put(&o, h->name, h->name_len);
        put(&o, ": ", 2);
        if ((int)i == m->transport)
            put(&o, transport, tlen);
        else
            put(&o, h->value, h->value_len);
        put(&o, "\r\n", 2);
    }
    put(&o, "\r\n", 2);
    if (o.over) {
        out[0] = '\0';
        return 0;
    }
    return o.len;
}

static const char *reason(int code)
{
    switch (code) {
    case 400: return "Bad Request";
    case 453: return "Not Enough Bandwidth";
    case 461: return "Unsupported Transport";
    case 503: return "Service Unavailable";
    default: return "Internal Server Error";
    }
}

size_t rtsp_fmt_error(char *out, size_t cap, int code, const rtsp_msg *request)
{
    if (cap == 0)
        return 0;
    out_buf o = {out, cap, 0, false};
    char line[64];
    out[0] = '\0';
    if (code < 100 || code > 999)
        code = 500;
    int n = snprintf(line, sizeof line, "RTSP/%s %d %s\r\n",
                     request != NULL && request->version == 20 ? "2.0" : "1.0", code, reason(code));
    put(&o, line, (size_t)n);
    if (request != NULL && request->cseq >= 0) {
        /* rtsp_parse_head accepted it as 1..9 digits */
        put_str(&o, "CSeq: ");
        put(&o, request->headers[request->cseq].value, request->headers[request->cseq].value_len);
        put_str(&o, "\r\n");
    }
    put_str(&o, "\r\n");
    if (o.over) {
        out[0] = '\0';
        return 0;
    }
    return o.len;
}
