/*
 * fwx - local redirection's helper for the "nft" backend: the original application
 * of a locally redirected connection. sock_diag gives the client socket's uid and inode (by its
 * exact tuple), /proc the process holding that inode and its cgroup. The registry that carries
 * records between processes is lib/core/redirect_registry.c; the rules are in nft.c
 * (fwx_firewall_redirect_local) and the relaying in intercept.c.
 * SPDX-License-Identifier: MIT
 */
#include "backends/nft/nft_impl.h"
#include "util/util.h"

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

#define PROC_SCAN_MAX 65536 /* fd links looked at to find a socket's process */

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
