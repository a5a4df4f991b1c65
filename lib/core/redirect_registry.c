/*
 * fwx - the redirect-record registry: how a record crosses from one process to the next on a
 * host (doc/redirect.md, "the registry and the mark").
 *
 * When a redirected flow's outbound connection is made, its socket is bound first (to the
 * unspecified address: the source port is then unique on the host while the socket lives) and
 * the record written to a file named after the tuple the next hop's accepted socket sees,
 * `tcp4-<source port>-<destination>-<port>`, in FWX_REDIRECT_DIR (default /run/fwx/redirect).
 * The header names the source address too (the one the kernel's route gives the socket), and
 * a reader that knows its peer's address takes the file only when that matches: a flow from
 * another host may share the source port and destination with one of fwx's own outbound flows
 * (ports are only unique per address), and must not inherit its record (it would
 * be refused as a loop). The next proxy reads it by its accepted socket's peer address
 * and port and original destination. The file is removed when the connection ends; files of
 * dead writers (pid in the header) are swept. fwx_connection_link_outbound() is the host's way to do the same for a socket it makes
 * (WFP's SIO_SET_WFP_CONNECTION_REDIRECT_RECORDS).
 * SPDX-License-Identifier: MIT
 */
#include "core/internal.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define REG_MAGIC "fwx-redirect 2"
#define REG_HEAD_MAX 96

const char *fwx__registry_dir(void)
{
    const char *d = getenv("FWX_REDIRECT_DIR");
    return d != NULL && d[0] == '/' ? d : "/run/fwx/redirect";
}

static bool reg_name(uint16_t sport, const struct sockaddr *dst, char *out, size_t cap)
{
    char ip[INET_ADDRSTRLEN];
    if (dst->sa_family != AF_INET || inet_ntop(AF_INET, &((const struct sockaddr_in *)dst)->sin_addr, ip, sizeof ip) == NULL)
        return false;
    int n = snprintf(out, cap, "%s/tcp4-%u-%s-%u", fwx__registry_dir(), (unsigned)sport, ip,
                     (unsigned)fwx__sa_port(dst));
    return n > 0 && (size_t)n < cap;
}

static int mkdirs(const char *path)
{
    char p[FWX__REG_PATH_MAX];
    if (snprintf(p, sizeof p, "%s", path) >= (int)sizeof p)
        return -1;
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = '\0';
            if (mkdir(p, 0755) != 0 && errno != EEXIST)
                return -1;
            *s = '/';
        }
    return mkdir(p, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

int fwx__registry_put(const struct sockaddr *src, const struct sockaddr *dst, const fwx_redirect_record *rec,
                      uint32_t slots, char *path, size_t cap)
{
    uint8_t wire[FWX_REDIRECT_WIRE_MAX];
    size_t len = 0;
    char tmp[FWX__REG_PATH_MAX + 16], head[REG_HEAD_MAX], sip[INET_ADDRSTRLEN];
    if (src->sa_family != AF_INET || fwx__sa_is_unspecified(src) ||
        inet_ntop(AF_INET, &((const struct sockaddr_in *)src)->sin_addr, sip, sizeof sip) == NULL ||
        !reg_name(fwx__sa_port(src), dst, path, cap) ||
        FWX_FAILED(fwx_redirect_record_serialize(rec, wire, sizeof wire, &len)))
        return -1;
    long pid = (long)getpid();
    snprintf(tmp, sizeof tmp, "%s.%ld", path, pid);
    int hn = snprintf(head, sizeof head, REG_MAGIC " pid=%ld slots=0x%02x src=%s\n", pid, (unsigned)slots & 0xFF, sip);
    /* The directory is made only when the file cannot be: this runs before every intercepted
       flow's upstream connect, and three mkdir calls per flow were a tenth of that path
       (bench/README.md, issue 13, part 5). */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 && errno == ENOENT && mkdirs(fwx__registry_dir()) == 0)
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    struct iovec iov[2] = {{head, (size_t)hn}, {wire, len}};
    bool ok = writev(fd, iov, 2) == (ssize_t)((size_t)hn + len);
    ok = close(fd) == 0 && ok;
    /* rename: a reader sees the whole file or none */
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* Reads a registry file strictly: the header line exactly as written, then one record and
   nothing else. NULL if it is not there, not well-formed, or (src not NULL nor unspecified)
   written for a flow from another source address. */
static fwx_redirect_record *read_entry(const char *path, const struct sockaddr *src, long *pid_out, uint32_t *slots)
{
    uint8_t buf[REG_HEAD_MAX + FWX_REDIRECT_WIRE_MAX + 1];
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return NULL;
    size_t n = 0;
    for (ssize_t r; n < sizeof buf && (r = read(fd, buf + n, sizeof buf - n)) > 0;)
        n += (size_t)r;
    close(fd);
    const uint8_t *nl = memchr(buf, '\n', n < REG_HEAD_MAX ? n : REG_HEAD_MAX);
    if (n == sizeof buf || nl == NULL)
        return NULL;
    char head[REG_HEAD_MAX];
    memcpy(head, buf, (size_t)(nl - buf));
    head[nl - buf] = '\0';
    long pid;
    unsigned sl;
    char tail, sip[INET_ADDRSTRLEN + 1];
    struct in_addr sa;
    if (sscanf(head, REG_MAGIC " pid=%ld slots=0x%2x src=%15[0-9.]%c", &pid, &sl, sip, &tail) != 3 || pid <= 0 ||
        inet_pton(AF_INET, sip, &sa) != 1)
        return NULL;
    if (src != NULL && !fwx__sa_is_unspecified(src) &&
        (src->sa_family != AF_INET || ((const struct sockaddr_in *)src)->sin_addr.s_addr != sa.s_addr))
        return NULL; /* the same port and destination, but another flow */
    fwx_redirect_record *rec = NULL;
    if (FWX_FAILED(fwx_redirect_record_parse(nl + 1, n - (size_t)(nl + 1 - buf), &rec)))
        return NULL;
    if (pid_out != NULL)
        *pid_out = pid;
    if (slots != NULL)
        *slots = sl;
    return rec;
}

fwx_redirect_record *fwx__registry_get(const struct sockaddr *src, const struct sockaddr *dst, uint32_t *slots)
{
    char path[FWX__REG_PATH_MAX];
    *slots = 0;
    if (!reg_name(fwx__sa_port(src), dst, path, sizeof path))
        return NULL;
    return read_entry(path, src, NULL, slots);
}

fwx_result fwx_redirect_registry_lookup(uint16_t source_port, const struct sockaddr *destination,
                                        uint32_t destination_len, fwx_redirect_record **out, uint32_t *slots)
{
    if (destination == NULL || out == NULL)
        return FWX_E_POINTER;
    *out = NULL;
    struct sockaddr_storage d;
    if (!fwx__sa_canon(destination, destination_len, &d))
        return FWX_E_INVALIDARG;
    if (d.ss_family != AF_INET)
        return FWX_E_NOT_SUPPORTED;
    uint32_t sl = 0;
    struct sockaddr_in any = {.sin_family = AF_INET, .sin_port = htons(source_port)};
    *out = fwx__registry_get((struct sockaddr *)&any, (struct sockaddr *)&d, &sl);
    if (slots != NULL)
        *slots = sl;
    return *out != NULL ? FWX_S_OK : FWX_E_NOT_FOUND;
}

fwx_result fwx_redirect_registry_lookup_flow(const struct sockaddr *source, uint32_t source_len,
                                             const struct sockaddr *destination, uint32_t destination_len,
                                             fwx_redirect_record **out, uint32_t *slots)
{
    if (source == NULL || destination == NULL || out == NULL)
        return FWX_E_POINTER;
    *out = NULL;
    struct sockaddr_storage s, d;
    if (!fwx__sa_canon(source, source_len, &s) || !fwx__sa_canon(destination, destination_len, &d))
        return FWX_E_INVALIDARG;
    if (s.ss_family != AF_INET || d.ss_family != AF_INET)
        return FWX_E_NOT_SUPPORTED;
    if (fwx__sa_is_unspecified((struct sockaddr *)&s) || fwx__sa_port((struct sockaddr *)&s) == 0)
        return FWX_E_INVALIDARG;
    uint32_t sl = 0;
    *out = fwx__registry_get((struct sockaddr *)&s, (struct sockaddr *)&d, &sl);
    if (slots != NULL)
        *slots = sl;
    return *out != NULL ? FWX_S_OK : FWX_E_NOT_FOUND;
}

fwx_result fwx_redirect_registry_list(fwx_redirect_registry_cb cb, void *arg)
{
    if (cb == NULL)
        return FWX_E_POINTER;
    DIR *d = opendir(fwx__registry_dir());
    if (d == NULL)
        return FWX_S_OK;
    char path[FWX__REG_PATH_MAX + 300], ip[INET_ADDRSTRLEN + 1];
    unsigned seen = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL && seen < 65536; seen++) {
        unsigned sport, dport;
        char tail;
        /* exactly tcp4-<port>-<IPv4>-<port>: a temporary file (".pid") does not match */
        if (sscanf(e->d_name, "tcp4-%5u-%15[0-9.]-%5u%c", &sport, ip, &dport, &tail) != 3 || sport == 0 ||
            sport > 65535 || dport == 0 || dport > 65535)
            continue;
        struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)dport)};
        if (inet_pton(AF_INET, ip, &dst.sin_addr) != 1)
            continue;
        snprintf(path, sizeof path, "%s/%s", fwx__registry_dir(), e->d_name);
        long pid = 0;
        uint32_t slots = 0;
        fwx_redirect_record *rec = read_entry(path, NULL, &pid, &slots);
        if (rec == NULL)
            continue;
        cb(arg, (uint16_t)sport, (struct sockaddr *)&dst, pid, slots, rec);
        fwx_redirect_record_unref(rec);
    }
    closedir(d);
    return FWX_S_OK;
}

void fwx__registry_sweep(void)
{
    DIR *d = opendir(fwx__registry_dir());
    if (d == NULL)
        return;
    char path[FWX__REG_PATH_MAX + 300], head[REG_HEAD_MAX];
    unsigned seen = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL && seen < 100000; seen++) {
        if (strncmp(e->d_name, "tcp4-", 5) != 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", fwx__registry_dir(), e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
            continue;
        ssize_t r = read(fd, head, sizeof head - 1);
        close(fd);
        long pid = 0;
        if (r > 0) {
            head[r] = '\0';
            if (sscanf(head, REG_MAGIC " pid=%ld", &pid) != 1)
                pid = 0;
        }
        char proc[32];
        snprintf(proc, sizeof proc, "/proc/%ld", pid);
        if (pid <= 0 || access(proc, F_OK) != 0)
            unlink(path); /* its writer is gone (crash, kill -9): the flow is gone too */
    }
    closedir(d);
}


/* ---- the host's side: an outbound socket linked to a connection's record --------------------- */

/* The source address the kernel will give a connection to dst from a socket carrying mark:
   the one a UDP socket connected the same way gets (connecting a UDP socket sends nothing). */
static bool route_source(const struct sockaddr_in *dst, uint32_t mark, struct sockaddr_in *out)
{
    int u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (u < 0)
        return false;
    (void)setsockopt(u, SOL_SOCKET, SO_MARK, &mark, sizeof mark); /* as the TCP socket will have it */
    socklen_t sl = sizeof *out;
    bool ok = connect(u, (const struct sockaddr *)dst, sizeof *dst) == 0 &&
              getsockname(u, (struct sockaddr *)out, &sl) == 0 && out->sin_family == AF_INET;
    close(u);
    return ok;
}

fwx_result fwx_connection_link_outbound(IFWXConnection *conn, int fd, const struct sockaddr *dst, uint32_t dst_len,
                                        uint32_t slots)
{
    if (conn == NULL || dst == NULL || !fwx__conn_is_ours(conn))
        return FWX_E_POINTER;
    fwx__conn *c = fwx__conn_from(conn);
    struct sockaddr_storage d;
    if (!fwx__sa_canon(dst, dst_len, &d) || slots > 0xFF)
        return FWX_E_INVALIDARG;
    if (c->flags & FWX_CONNECTION_TERMINATED)
        return FWX_E_TERMINATING;
    if (fwx__conn_x(c)->redirect == NULL)
        return FWX_E_NOT_FOUND;
    if (c->ext->redirect_file != NULL)
        return FWX_E_ALREADY_EXISTS_WIN32;
    int type = 0;
    socklen_t tl = sizeof type;
    if (d.ss_family != AF_INET || getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 || type != SOCK_STREAM)
        return FWX_E_NOT_SUPPORTED; /* the registry names TCP over IPv4 flows */
    struct sockaddr_in self;
    socklen_t sl = sizeof self;
    if (getsockname(fd, (struct sockaddr *)&self, &sl) != 0 || self.sin_family != AF_INET)
        return FWX_E_INVALIDARG;
    if (self.sin_port == 0) {
        struct sockaddr_in any = {.sin_family = AF_INET};
        sl = sizeof self;
        if (bind(fd, (struct sockaddr *)&any, sizeof any) != 0 || getsockname(fd, (struct sockaddr *)&self, &sl) != 0)
            return FWX_E_FAIL;
    }
    uint32_t mark = FWX__REDIRECT_MARK | FWX__REDIRECT_SLOT_MARK(slots);
    /* The whole tuple the next hop sees: the source address is the bound one, or the one the
       route gives when the socket is bound to the unspecified address. */
    struct sockaddr_in src = self, routed;
    if (src.sin_addr.s_addr == htonl(INADDR_ANY)) {
        if (!route_source((const struct sockaddr_in *)&d, mark, &routed)) {
            fwx__log(c->session->fw, FWX_LOG_WARN, "connection %llu: no route to its destination, redirect record "
                                                   "not written", (unsigned long long)c->id);
            return FWX_E_FAIL;
        }
        src.sin_addr = routed.sin_addr;
    }
    char path[FWX__REG_PATH_MAX];
    if (fwx__registry_put((struct sockaddr *)&src, (struct sockaddr *)&d, c->ext->redirect, slots, path, sizeof path) != 0) {
        fwx__log(c->session->fw, FWX_LOG_WARN, "connection %llu: cannot write its redirect record to %s",
                 (unsigned long long)c->id, fwx__registry_dir());
        return FWX_E_FAIL;
    }
    if ((c->ext->redirect_file = strdup(path)) == NULL) {
        unlink(path);
        return FWX_E_OUTOFMEMORY;
    }
    /* SO_MARK needs CAP_NET_ADMIN: without it the record is there, the socket unmarked. */
    return setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark) == 0 ? FWX_S_OK : FWX_S_FALSE;
}

void fwx__registry_unlink(fwx__conn *c)
{
    if (fwx__conn_x(c)->redirect_file == NULL)
        return;
    unlink(c->ext->redirect_file);
    free(c->ext->redirect_file);
    c->ext->redirect_file = NULL;
}
