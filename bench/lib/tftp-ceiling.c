/*
 * bench:tftp's ceiling: the least a TFTP server can do to send a file with RFC 7440 windows,
 * in C, so that the benchmark shows what the bed itself allows. It is not a TFTP server:
 * one transfer at a time, octet only, no tsize probe handling, no retransmission beyond
 * re-sending the window after a 1 s silence, no rollover, no jail. Never run it outside the
 * benchmark's namespace.
 *
 *   tftp-ceiling <address> <root> [batch]
 *
 * batch 1 (default) puts each window on the wire with one sendmmsg(2); 0 sends block by block.
 * The file is mapped once; blocks go out as header + mapped bytes (no copy in user space).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#define MAX_WINDOW 64

/* Appends "name\0value\0" to an OACK; returns the new length. */
static int option(unsigned char *oack, int at, const char *name, long long value) {
  at += sprintf((char *)oack + at, "%s", name) + 1;
  at += sprintf((char *)oack + at, "%lld", value) + 1;
  return at;
}

static void serve(int listener, const char *root, int batch, struct in_addr local) {
  unsigned char req[1024];
  struct sockaddr_in client;
  socklen_t clen = sizeof client;
  ssize_t n = recvfrom(listener, req, sizeof req - 1, 0, (struct sockaddr *)&client, &clen);
  if (n < 4 || req[0] != 0 || req[1] != 1) return; /* read requests only */
  req[n] = 0;
  const char *end = (const char *)req + n;
  const char *name = (const char *)req + 2;
  if (strchr(name, '/') || name[0] == '.') return;
  const char *p = name + strlen(name) + 1;
  if (p >= end) return;
  p += strlen(p) + 1; /* the mode */

  char path[1024];
  snprintf(path, sizeof path, "%s/%s", root, name);
  int fd = open(path, O_RDONLY);
  if (fd < 0) return;
  struct stat st;
  if (fstat(fd, &st) < 0 || st.st_size == 0) {
    close(fd);
    return;
  }

  /* Only the options asked for go into the OACK. */
  long blksize = 512, window = 1;
  unsigned char oack[512] = {0, 6};
  int olen = 2;
  while (p < end) {
    const char *key = p, *value = key + strlen(key) + 1;
    if (value >= end) break;
    if (!strcasecmp(key, "blksize")) olen = option(oack, olen, "blksize", blksize = atol(value));
    else if (!strcasecmp(key, "windowsize")) olen = option(oack, olen, "windowsize", window = atol(value));
    else if (!strcasecmp(key, "tsize")) olen = option(oack, olen, "tsize", st.st_size);
    p = value + strlen(value) + 1;
  }
  if (blksize < 8 || blksize > 65464 || window < 1) {
    close(fd);
    return;
  }
  if (window > MAX_WINDOW) window = MAX_WINDOW;
  long blocks = st.st_size / blksize + 1;
  if (blocks > 65535) { /* no rollover here */
    close(fd);
    return;
  }
  unsigned char *data = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (data == MAP_FAILED) return;

  /* A new port for the transfer (RFC 1350 transfer IDs), connected to the client. */
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in here = {.sin_family = AF_INET, .sin_addr = local};
  struct timeval timeout = {1, 0};
  if (s < 0 || bind(s, (struct sockaddr *)&here, sizeof here) < 0 || connect(s, (struct sockaddr *)&client, clen) < 0 ||
      setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout) < 0) {
    if (s >= 0) close(s);
    munmap(data, st.st_size);
    return;
  }
  if (olen > 2) send(s, oack, olen, 0);

  unsigned char headers[MAX_WINDOW][4];
  struct iovec iov[MAX_WINDOW][2];
  struct mmsghdr msgs[MAX_WINDOW];
  long acked = 0;
  int silences = 0;
  int started = olen == 2; /* without an OACK, block 1 goes out at once */
  while (acked < blocks && silences < 10) {
    if (started) {
      unsigned char ack[516];
      ssize_t got = recv(s, ack, sizeof ack, 0);
      if (got < 0) silences++;
      else if (got >= 4 && ack[0] == 0 && ack[1] == 4) {
        long b = (ack[2] << 8) | ack[3];
        if (b < acked) continue; /* stale: send nothing (no Sorcerer's Apprentice) */
        acked = b;
        silences = 0;
        if (acked >= blocks) break;
      } else if (got >= 2 && ack[1] == 5) break; /* the client gave up */
      else continue;
    }
    started = 1;
    int w = 0;
    for (long b = acked + 1; b <= blocks && w < window; b++, w++) {
      long off = (b - 1) * blksize, len = st.st_size - off;
      if (len > blksize) len = blksize;
      if (len < 0) len = 0;
      headers[w][0] = 0;
      headers[w][1] = 3;
      headers[w][2] = (unsigned char)(b >> 8);
      headers[w][3] = (unsigned char)b;
      iov[w][0] = (struct iovec){headers[w], 4};
      iov[w][1] = (struct iovec){data + off, (size_t)len};
      memset(&msgs[w], 0, sizeof msgs[w]);
      msgs[w].msg_hdr.msg_iov = iov[w];
      msgs[w].msg_hdr.msg_iovlen = 2;
      if (!batch) sendmsg(s, &msgs[w].msg_hdr, 0);
    }
    if (batch && w > 0) sendmmsg(s, msgs, (unsigned)w, 0);
  }
  close(s);
  munmap(data, st.st_size);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: tftp-ceiling <address> <root> [batch]\n");
    return 2;
  }
  int batch = argc > 3 ? atoi(argv[3]) : 1;
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(69)};
  if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1) return 2;
  int listener = socket(AF_INET, SOCK_DGRAM, 0);
  if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0) {
    perror("tftp-ceiling: bind");
    return 1;
  }
  for (;;) serve(listener, argv[2], batch, addr.sin_addr);
}
