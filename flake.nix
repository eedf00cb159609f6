{
  description = "ktstr: did this kernel or this sched_ext scheduler get worse, and where?";

  # nixos-unstable: ktstr builds scx schedulers (crates 1.1.4) at run time, which need rustc 1.91;
  # nixos-25.05 ships an older one. The lock pins one revision of it.
  inputs.nixpkgs.url = "github:nixos/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      system = "x86_64-linux";
      pkgs = nixpkgs.legacyPackages.${system};
      lib = pkgs.lib;

      # What ktstr runs at run time: QEMU, busybox for the guest shell, the kernel build toolchain,
      # clang for BPF schedulers.
      runtimeDeps = with pkgs; [
        qemu_kvm
        pkgsStatic.busybox
        gnumake gcc binutils flex bison bc elfutils openssl pahole cpio zstd xz perl python3
        clang_19 llvm_19 pkg-config zlib cargo rustc git
        gnupg  # gpgv checks kernel.org's signed sha256sums.asc
      ];

      # ktstr looks for linux-source-X.Y.tar.xz (Debian's naming) in KTSTR_DEBIAN_SRC_DIR.
      kernelSources = pkgs.linkFarm "ktstr-kernel-sources" [
        { name = "linux-source-6.12.tar.xz"; path = pkgs.linux_6_12.src; }
        { name = "linux-source-6.1.tar.xz"; path = pkgs.linux_6_1.src; }
      ];

      ktstr = pkgs.rustPlatform.buildRustPackage {
        pname = "ktstr";
        version = "0.1.0";
        src = lib.cleanSource ./.;
        cargoLock.lockFile = ./Cargo.lock;
        nativeBuildInputs = with pkgs; [ pkg-config makeWrapper ];
        # The guest agent is linked statically (build.rs: --target + crt-static).
        buildInputs = with pkgs; [ glibc.static zlib ];
        cargoBuildFlags = [ "-p" "ktstr" ];
        # End-to-end tests boot VMs; they run in CI (.ci/run), not in the nix sandbox.
        doCheck = false;
        postInstall = ''
          wrapProgram $out/bin/ktstr \
            --prefix PATH : ${lib.makeBinPath runtimeDeps} \
            --set-default KTSTR_BUSYBOX ${pkgs.pkgsStatic.busybox}/bin/busybox \
            --set-default KTSTR_DEBIAN_SRC_DIR ${kernelSources}
        '';
      };
    in
    {
      packages.${system} = {
        default = ktstr;
        inherit ktstr;
      };

      apps.${system} = {
        default = { type = "app"; program = "${ktstr}/bin/ktstr"; };
        # `nix run .#matrix`: the embedded default matrix.
        matrix = {
          type = "app";
          program = toString (pkgs.writeShellScript "ktstr-matrix" ''
            exec ${ktstr}/bin/ktstr matrix "$@"
          '');
        };
      };

      devShells.${system}.default = pkgs.mkShell {
        packages = runtimeDeps ++ (with pkgs; [ glibc.static clippy rustfmt cargo-nextest ]);
      };
    };
}
