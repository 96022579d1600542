#!/bin/sh
# mmdebstrap customize hook ($1: the root filesystem): Debian's nginx arranged as nginxinc/nginx-unprivileged is,
# for the frontend image on a machine without image registries (bootstrap/build-images.sh --bases local).
set -eu
root="$1"
chroot "$root" groupadd --system --gid 101 nginx
chroot "$root" useradd --system --uid 101 --gid 101 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin nginx
rm -f "$root"/etc/nginx/sites-enabled/* "$root"/etc/nginx/conf.d/*
mkdir -p "$root"/etc/nginx/templates
cat > "$root"/etc/nginx/nginx.conf <<'CONF'
worker_processes auto;
pid /tmp/nginx.pid;
error_log /dev/stderr notice;
include /etc/nginx/modules-enabled/*.conf;
events { worker_connections 1024; }
http {
    client_body_temp_path /tmp/client_temp;
    proxy_temp_path       /tmp/proxy_temp_path;
    fastcgi_temp_path     /tmp/fastcgi_temp;
    uwsgi_temp_path       /tmp/uwsgi_temp;
    scgi_temp_path        /tmp/scgi_temp;
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log /dev/stdout;
    sendfile on;
    keepalive_timeout 65;
    include /etc/nginx/conf.d/*.conf;
}
CONF
# The official image's entrypoint renders /etc/nginx/templates/*.template with envsubst, substituting only
# variables the environment defines (nginx's own $host, $uri stay as they are).
cat > "$root"/docker-entrypoint.sh <<'SH'
#!/bin/sh
set -eu
defined=$(printf '${%s} ' $(env | cut -d= -f1))
for template in /etc/nginx/templates/*.template; do
  [ -e "$template" ] || continue
  out="/etc/nginx/conf.d/$(basename "$template" .template)"
  envsubst "$defined" < "$template" > "$out"
done
exec "$@"
SH
chmod 755 "$root"/docker-entrypoint.sh
chown -R 101:101 "$root"/etc/nginx/conf.d
