/*
 * fwx - redirect records across processes, and local redirection, for the "nft" backend
 * (issue 6; doc/redirect.md describes the conventions a cooperating proxy follows).
 *
 * Three pieces:
 *
 * - **The record registry**: when fwx makes the outbound connection of a redirected flow, it
 *   binds the socket first and writes the flow's record (the wire form) to a file named after
 *   the tuple the next hop's accepted socket will see: `tcp4-<source port>-<destination>-<port>`
 *   in FWX_REDIRECT_DIR (default /run/fwx/redirect). The next proxy on this host, fwx or not,
 *   reads it by its accepted socket's peer port and original destination (SO_ORIGINAL_DST).
 *   The file is removed when the flow ends; files of dead writers (pid in the header) are
 *   swept at start. The source port is unique per host while the socket lives (bound to the
 *   unspecified address), so the name cannot collide with a live flow.
 *
 * - **The mark**: each instance doing local redirection has a slot 0..7. Its outbound sockets
 *   carry SO_MARK FWX__NFT_OWN_MARK | the slot bits of every instance the flow has passed, and
 *   each instance's output rule skips a socket whose mark has its own slot bit: a connection
 *   passes each cooperating proxy at most once, whatever order their chains run in. The rule
 *   copies the mark into the conntrack mark, so any nftables rule can match redirected flows
 *   (`ct mark and 0x10000000 != 0`) and the proxies they passed.
 *
 * - **The original application** of a locally redirected connection: sock_diag gives the
 *   client socket's uid and inode (by its exact tuple), /proc the process holding that inode
 *   and its cgroup.
 * SPDX-License-Identifier: MIT
 */
#include "nft/nft_impl.h"
#include "firewall/internal.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define REG_MAGIC "fwx-redirect 1"
#define REG_HEAD_MAX 96
#define PROC_SCAN_MAX 65536 /* fd links looked at to find a socket's process */

const char *fwx__nft_registry_dir(void)
{
    const char *d = getenv("FWX_REDIRECT_DIR");
    return d != NULL && d[0] == '/' ? d : "/run/fwx/redirect";
}

static bool reg_name(uint16_t sport, const struct sockaddr *dst, char *out, size_t cap)
{
    char ip[INET_ADDRSTRLEN];
    if (dst->sa_family != AF_INET || inet_ntop(AF_INET, &((const struct sockaddr_in *)dst)->sin_addr, ip, sizeof ip) == NULL)
        return false;
    int n = snprintf(out, cap, "%s/tcp4-%u-%s-%u", fwx__nft_registry_dir(), (unsigned)sport, ip,
                     (unsigned)fwx__sa_port(dst));
    return n > 0 && (size_t)n < cap;
}

static int mkdirs(const char *path)
{
    char p[FWX__NFT_REG_PATH_MAX];
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

int fwx__nft_registry_put(uint16_t sport, const struct sockaddr *dst, const fwx_redirect_record *rec, uint32_t slots,
                          char *path, size_t cap)
{
    uint8_t wire[FWX_REDIRECT_WIRE_MAX];
    size_t len = 0;
    char tmp[FWX__NFT_REG_PATH_MAX + 16], head[REG_HEAD_MAX];
    if (!reg_name(sport, dst, path, cap) || FWX_FAILED(fwx_redirect_record_serialize(rec, wire, sizeof wire, &len)) ||
        mkdirs(fwx__nft_registry_dir()) != 0)
        return -1;
    snprintf(tmp, sizeof tmp, "%s.%ld", path, (long)getpid());
    int hn = snprintf(head, sizeof head, REG_MAGIC " pid=%ld slots=0x%02x\n", (long)getpid(), (unsigned)slots & 0xFF);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    bool ok = write(fd, head, (size_t)hn) == hn && write(fd, wire, len) == (ssize_t)len;
    ok = close(fd) == 0 && ok;
    /* rename: a reader sees the whole file or none */
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

fwx_redirect_record *fwx__nft_registry_get(uint16_t sport, const struct sockaddr *dst, uint32_t *slots)
{
    char path[FWX__NFT_REG_PATH_MAX];
    uint8_t buf[REG_HEAD_MAX + FWX_REDIRECT_WIRE_MAX + 1];
    *slots = 0;
    if (!reg_name(sport, dst, path, sizeof path))
        return NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return NULL;
    size_t n = 0;
    for (ssize_t r; n < sizeof buf && (r = read(fd, buf + n, sizeof buf - n)) > 0;)
        n += (size_t)r;
    close(fd);
    /* Strict: the header line exactly as written, then one record and nothing else. */
    const uint8_t *nl = memchr(buf, '\n', n < REG_HEAD_MAX ? n : REG_HEAD_MAX);
    if (n == sizeof buf || nl == NULL)
        return NULL;
    char head[REG_HEAD_MAX];
    memcpy(head, buf, (size_t)(nl - buf));
    head[nl - buf] = '\0';
    long pid;
    unsigned sl;
    char tail;
    if (sscanf(head, REG_MAGIC " pid=%ld slots=0x%2x%c", &pid, &sl, &tail) != 2 || pid <= 0)
        return NULL;
    fwx_redirect_record *rec = NULL;
    if (FWX_FAILED(fwx_redirect_record_parse(nl + 1, n - (size_t)(nl + 1 - buf), &rec)))
        return NULL;
    *slots = sl;
    return rec;
}

void fwx__nft_registry_sweep(void)
{
    DIR *d = opendir(fwx__nft_registry_dir());
    if (d == NULL)
        return;
    char path[FWX__NFT_REG_PATH_MAX + 300], head[REG_HEAD_MAX];
    unsigned seen = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL && seen < 100000; seen++) {
        if (strncmp(e->d_name, "tcp4-", 5) != 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", fwx__nft_registry_dir(), e->d_name);
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

/* ---- the original application ------------------------------------------------------------------- */

/* uid and inode of the local TCP socket connected from `src` to `dst`, by sock_diag. */
static bool diag_lookup(const struct sockaddr_in *src, const struct sockaddr_in *dst, uint32_t *uid, uint32_t *inode)
{
    int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0)
        return false;
    struct {
        struct nlmsghdr nh;
        struct inet_diag_req_v2 r;
    } req;
    memset(&req, 0, sizeof req);
    req.nh.nlmsg_len = sizeof req;
    req.nh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    req.nh.nlmsg_flags = NLM_F_REQUEST;
    req.r.sdiag_family = AF_INET;
    req.r.sdiag_protocol = IPPROTO_TCP;
    req.r.idiag_states = ~0u;
    req.r.id.idiag_sport = src->sin_port;
    req.r.id.idiag_dport = dst->sin_port;
    memcpy(req.r.id.idiag_src, &src->sin_addr, 4);
    memcpy(req.r.id.idiag_dst, &dst->sin_addr, 4);
    req.r.id.idiag_cookie[0] = req.r.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
    struct sockaddr_nl nl = {.nl_family = AF_NETLINK};
    struct timeval tv = {0, 200000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    bool found = false;
    if (sendto(fd, &req, sizeof req, 0, (struct sockaddr *)&nl, sizeof nl) == (ssize_t)sizeof req) {
        union {
            char b[8192];
            struct nlmsghdr align;
        } buf;
        ssize_t n = recv(fd, buf.b, sizeof buf.b, 0);
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf.b; n > 0 && NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY || h->nlmsg_len < NLMSG_LENGTH(sizeof(struct inet_diag_msg)))
                break;
            const struct inet_diag_msg *m = NLMSG_DATA(h);
            *uid = m->idiag_uid;
            *inode = m->idiag_inode;
            found = *inode != 0;
            break;
        }
    }
    close(fd);
    return found;
}

/* The process holding socket inode `inode`, by its fd links (bounded), or 0. */
static uint32_t pid_of_inode(uint32_t inode)
{
    char want[32], link[64], path[64];
    snprintf(want, sizeof want, "socket:[%u]", inode);
    DIR *proc = opendir("/proc");
    if (proc == NULL)
        return 0;
    uint32_t pid = 0;
    unsigned looked = 0;
    for (struct dirent *p; pid == 0 && looked < PROC_SCAN_MAX && (p = readdir(proc)) != NULL;) {
        char *end;
        unsigned long v = strtoul(p->d_name, &end, 10);
        if (*end != '\0' || v == 0)
            continue;
        snprintf(path, sizeof path, "/proc/%lu/fd", v);
        DIR *fds = opendir(path);
        if (fds == NULL)
            continue;
        for (struct dirent *f; (f = readdir(fds)) != NULL && looked < PROC_SCAN_MAX; looked++) {
            if (f->d_name[0] == '.')
                continue;
            snprintf(path, sizeof path, "/proc/%lu/fd/%.16s", v, f->d_name);
            ssize_t n = readlink(path, link, sizeof link - 1);
            if (n > 0) {
                link[n] = '\0';
                if (strcmp(link, want) == 0) {
                    pid = (uint32_t)v;
                    break;
                }
            }
        }
        closedir(fds);
    }
    closedir(proc);
    return pid;
}

bool fwx__nft_local_app(const struct sockaddr *peer, const struct sockaddr *orig, fwx_redirect_app *app, char *cg,
                        size_t cgcap)
{
    memset(app, 0, sizeof *app);
    app->struct_size = sizeof *app;
    app->uid = FWX_REDIRECT_UID_UNKNOWN;
    cg[0] = '\0';
    uint32_t uid = 0, inode = 0;
    if (peer->sa_family != AF_INET || orig->sa_family != AF_INET ||
        !diag_lookup((const struct sockaddr_in *)peer, (const struct sockaddr_in *)orig, &uid, &inode))
        return false; /* not a socket of this host: forwarded traffic */
    app->uid = uid;
    app->pid = pid_of_inode(inode);
    if (app->pid == 0)
        return true;
    char path[64], line[FWX_REDIRECT_CGROUP_PATH_MAX + 8];
    snprintf(path, sizeof path, "/proc/%u/cgroup", app->pid);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return true;
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "0::", 3) != 0)
            continue; /* the cgroup v2 line */
        size_t n = strcspn(line + 3, "\n");
        if (n > 0 && n < cgcap && n <= FWX_REDIRECT_CGROUP_PATH_MAX) {
            memcpy(cg, line + 3, n);
            cg[n] = '\0';
            app->cgroup_path = cg;
            char dir[FWX_REDIRECT_CGROUP_PATH_MAX + 32];
            struct stat st;
            snprintf(dir, sizeof dir, "/sys/fs/cgroup%s", cg);
            if (stat(dir, &st) == 0)
                app->cgroup_id = (uint64_t)st.st_ino;
        }
        break;
    }
    fclose(f);
    return true;
}
