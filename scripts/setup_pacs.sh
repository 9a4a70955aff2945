#!/usr/bin/env bash
# The real components the PACS and DICOM-result tests use: Orthanc with its DICOMweb plugin
# (started by a pytest fixture as a plain process, never as the Debian service) and dicom3tools'
# dciodvfy (validates the DICOM-SEG / RTSTRUCT files we write). Without them those tests skip.
set -euo pipefail
PACKAGES="orthanc orthanc-dicomweb dicom3tools"
if command -v Orthanc >/dev/null 2>&1 && command -v dciodvfy >/dev/null 2>&1 \
   && [ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ]; then
  exit 0  # already installed
fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  # The package's post-install script tries to start the service; in a container it cannot, and
  # the tests do not want it: refuse service starts for this install only.
  POLICY=/usr/sbin/policy-rc.d
  CREATED_POLICY=0
  if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$POLICY" && chmod +x "$POLICY" && CREATED_POLICY=1
  fi
  apt-get update -qq || true
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $PACKAGES >/dev/null \
    || echo "note: could not install $PACKAGES; the PACS and dciodvfy tests will skip" >&2
  [ "$CREATED_POLICY" = 1 ] && rm -f "$POLICY"
else
  echo "note: not root or no apt-get; install $PACKAGES for the PACS and dciodvfy tests (they skip otherwise)" >&2
fi
exit 0
