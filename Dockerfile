# The operator image: one static binary and a CA bundle on an empty base, running as UID 65532.
#
#   hack/image.sh            builds the binary and the context, then this file (see the README)
#
# The build context is a directory that holds exactly two files, assembled by hack/image.sh:
#   vault-connection-operator   the release binary for x86_64-unknown-linux-musl (static: no libc
#                               or loader at run time), built on the host
#   ca-certificates.crt         the CA bundle the AWS SDK verifies TLS with
# Nothing is compiled and nothing is pulled while the image builds, so it builds offline and in
# seconds. This file serves the test node and local use (linux/amd64). The published image is
# built without Docker by hack/release.sh (hack/oci): the same binary, built the same way
# (hack/release/build.sh), for linux/amd64 and linux/arm64, with the same two files in the same
# places, the same user, port, entrypoint and command; keep the two in step.
#
# `FROM scratch` is not an image: there is no base image to pin by digest and nothing in the
# image besides the two files (no shell, no package manager, no libc, no /etc/passwd; the user is
# numeric).
FROM scratch
COPY vault-connection-operator /vault-connection-operator
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/vault-connection-operator"]
CMD ["run"]
