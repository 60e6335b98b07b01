//! Child processes of a test: located, stopped on drop; a baresip phone.

// `libc::kill` sends SIGTERM (std's `Child::kill` only sends SIGKILL): the
// one unsafe call, on a pid this process spawned and has not reaped.
#![allow(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An external program a test drives, with the Debian package that has it
/// (`cargo xtask bootstrap` installs them all).
#[derive(Debug, Clone, Copy)]
pub struct Tool {
    pub name: &'static str,
    pub package: &'static str,
}

/// HTTP/3 (QUIC) and TLS front.
pub const CADDY: Tool = Tool {
    name: "caddy",
    package: "caddy",
};
/// SIP trunk / callee scenarios.
pub const SIPP: Tool = Tool {
    name: "sipp",
    package: "sip-tester",
};
/// A real SIP phone.
pub const BARESIP: Tool = Tool {
    name: "baresip",
    package: "baresip-core",
};
/// Speech synthesis for callees.
pub const FLITE: Tool = Tool {
    name: "flite",
    package: "flite",
};
/// A name server for test zones (NAPTR, SRV, A records of SIP trunks).
/// `dnsmasq-base`: the program without the system service `dnsmasq` adds.
pub const DNSMASQ: Tool = Tool {
    name: "dnsmasq",
    package: "dnsmasq-base",
};

impl Tool {
    /// Where it is installed: the first match on `PATH`, then /usr/bin,
    /// /usr/local/bin and /usr/sbin (dnsmasq); an error naming the package otherwise.
    pub fn path(&self) -> Result<PathBuf, String> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain([
                PathBuf::from("/usr/bin"),
                PathBuf::from("/usr/local/bin"),
                PathBuf::from("/usr/sbin"),
            ])
            .map(|d| d.join(self.name))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                format!(
                    "{} is not installed: `apt-get install -y {}` (Debian package; \
                     `cargo xtask bootstrap` installs it)",
                    self.name, self.package
                )
            })
    }

    /// [`Tool::path`], or a panic that says what to install.
    pub fn require(&self) -> PathBuf {
        self.path().unwrap_or_else(|e| panic!("{e}"))
    }
}

/// A child process stopped when dropped: SIGTERM, then SIGKILL if it has
/// not exited within 2 s.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`. Does
    /// nothing once it has exited (and been reaped).
    pub fn terminate(&mut self, grace: Duration) {
        if let Ok(Some(_)) = self.0.try_wait() {
            return;
        }
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        if self.wait_exit(grace).is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// SIGKILL at once (no chance to clean up), and reap it.
    pub fn sigkill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// Its exit status once it exits, or `None` after `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let until = Instant::now() + within;
        loop {
            if let Ok(Some(s)) = self.0.try_wait() {
                return Some(s);
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.terminate(Duration::from_secs(2));
    }
}

/// baresip headless: auto-answers calls to `user` on 127.0.0.1:`port`, plays
/// `wav` (8 kHz mono), hangs up when it ends (or after `secs`), and records
/// what it sends and receives (sndfile: `dumps/dump-*-enc.wav` / `-dec.wav`
/// under `dir/baresip-<name>`); its log is `dir/baresip-<name>.log`.
/// `codecs` is the account's `audio_codecs` (e.g. `PCMU`, `opus/48000/2,PCMU`).
pub fn start_baresip(
    dir: &Path,
    name: &str,
    user: &str,
    port: u16,
    wav: &Path,
    codecs: &str,
    secs: u32,
) -> Result<ChildGuard, String> {
    start_baresip_with(
        dir,
        name,
        user,
        port,
        wav,
        codecs,
        secs,
        &BaresipExtras::default(),
    )
}

/// What a test adds to [`start_baresip`]'s phone.
#[derive(Debug, Clone, Default)]
pub struct BaresipExtras {
    /// Appended to the account line, e.g. `;mediaenc=srtp-mand` (with the
    /// `srtp.so` module among `modules`).
    pub account_params: String,
    /// More modules to load, e.g. `["srtp.so"]`.
    pub modules: Vec<String>,
    /// Commands baresip runs once started (`-e`), e.g. `/dial sip:...`
    /// (long commands need `menu.so` among `modules`).
    pub commands: Vec<String>,
}

/// [`start_baresip`] with `extras`.
#[allow(clippy::too_many_arguments)]
pub fn start_baresip_with(
    dir: &Path,
    name: &str,
    user: &str,
    port: u16,
    wav: &Path,
    codecs: &str,
    secs: u32,
    extras: &BaresipExtras,
) -> Result<ChildGuard, String> {
    let bin = BARESIP.path()?;
    let conf = dir.join(format!("baresip-{name}"));
    let _ = std::fs::remove_dir_all(&conf);
    std::fs::create_dir_all(conf.join("dumps")).map_err(|e| e.to_string())?;
    let opus = if codecs.contains("opus") {
        "module\t\t\topus.so\n"
    } else {
        ""
    };
    let mut opus = opus.to_string();
    for m in &extras.modules {
        opus.push_str(&format!("module\t\t\t{m}\n"));
    }
    let rtp = 40_000 + (port % 1000) * 10;
    std::fs::write(
        conf.join("config"),
        format!(
            "poll_method\t\tepoll\nsip_listen\t\t127.0.0.1:{port}\nnet_interface\t\t127.0.0.1\n\
             audio_player\t\talsa,null\naudio_source\t\taufile,{wav}\naudio_alert\t\talsa,null\n\
             ausrc_srate\t\t8000\nauplay_srate\t\t8000\nausrc_channels\t\t1\nauplay_channels\t\t1\n\
             rtp_ports\t\t{rtp}-{rtp_max}\nsnd_path\t\t{dumps}\n\
             module_path\t\t/usr/lib/baresip/modules\n\
             module\t\t\tg711.so\n{opus}module\t\t\taufile.so\nmodule\t\t\talsa.so\nmodule\t\t\tsndfile.so\n\
             module_app\t\taccount.so\n",
            wav = wav.display(),
            rtp_max = rtp + 9,
            dumps = conf.join("dumps").display(),
        ),
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(
        conf.join("accounts"),
        format!(
            "<sip:{user}@127.0.0.1>;regint=0;answermode=auto;audio_codecs={codecs}{}\n",
            extras.account_params
        ),
    )
    .map_err(|e| e.to_string())?;
    let guard = spawn_baresip(&bin, dir, name, &conf, secs, &extras.commands)?;
    let until = Instant::now() + Duration::from_secs(5);
    while std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
        if Instant::now() > until {
            return Err(format!("baresip did not bind 127.0.0.1:{port}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(guard)
}

/// baresip with the config directory `conf`, quitting after `secs`; its
/// output in `dir/baresip-<name>.log`.
fn spawn_baresip(
    bin: &Path,
    dir: &Path,
    name: &str,
    conf: &Path,
    secs: u32,
    commands: &[String],
) -> Result<ChildGuard, String> {
    let log = std::fs::File::create(dir.join(format!("baresip-{name}.log")))
        .map_err(|e| e.to_string())?;
    let child = Command::new(bin)
        .arg("-f")
        .arg(conf)
        .args(["-t", &secs.to_string()])
        .args(commands.iter().flat_map(|c| ["-e", c.as_str()]))
        .current_dir(conf)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("baresip (Debian package baresip-core): {e}"))?;
    Ok(ChildGuard(child))
}

/// baresip as a user's phone (issue 16): registers `user` with the
/// registrar at `registrar` (`IP:port`) with Digest (`password`) every
/// `regint` seconds, on loopback, without audio; quits after `secs`
/// (un-REGISTERing). Its log is `dir/baresip-<name>.log`.
pub fn start_registering_baresip(
    dir: &Path,
    name: &str,
    user: &str,
    registrar: &str,
    password: &str,
    regint: u32,
    secs: u32,
) -> Result<ChildGuard, String> {
    let bin = BARESIP.path()?;
    let conf = dir.join(format!("baresip-{name}"));
    let _ = std::fs::remove_dir_all(&conf);
    std::fs::create_dir_all(&conf).map_err(|e| e.to_string())?;
    // baresip binds UDP and TCP here, and TLS on the next port.
    let port = crate::net::free_sip_port();
    std::fs::write(
        conf.join("config"),
        format!(
            "poll_method\t\tepoll\nsip_listen\t\t127.0.0.1:{port}\nnet_interface\t\t127.0.0.1\n\
             audio_player\t\tnull\naudio_source\t\tnull\naudio_alert\t\tnull\n\
             module_path\t\t/usr/lib/baresip/modules\nmodule\t\t\tg711.so\n\
             module_app\t\taccount.so\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(
        conf.join("accounts"),
        format!(
            "<sip:{user}@{registrar}>;auth_pass={password};regint={regint};audio_codecs=PCMU\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    spawn_baresip(&bin, dir, name, &conf, secs, &[])
}

/// How a registered phone ([`start_registering_phone`]) takes calls.
#[derive(Debug, Clone, Copy)]
pub enum PhoneBehaviour<'a> {
    /// Answers at once and plays this 8 kHz mono WAV (hanging up when it
    /// ends).
    Answers(&'a Path),
    /// Rings and never answers.
    Rings,
    /// On another call: at start it dials `blackhole` (a UDP socket that
    /// never answers) and takes one call at most, so every INVITE gets 486.
    Busy { blackhole: u16 },
}

/// baresip as a user's phone that takes calls (issue 16): registers
/// `user` with the registrar at `registrar` (`IP:port`, Digest with
/// `password`, every 60 s), behaves as `behaviour` says when called,
/// dumps what it sends and hears (`dumps/dump-*-enc.wav` / `-dec.wav`
/// under `dir/baresip-<name>`), and quits after `secs`. Its log is
/// `dir/baresip-<name>.log`.
pub fn start_registering_phone(
    dir: &Path,
    name: &str,
    user: &str,
    registrar: &str,
    password: &str,
    behaviour: PhoneBehaviour<'_>,
    secs: u32,
) -> Result<ChildGuard, String> {
    let bin = BARESIP.path()?;
    let conf = dir.join(format!("baresip-{name}"));
    let _ = std::fs::remove_dir_all(&conf);
    std::fs::create_dir_all(conf.join("dumps")).map_err(|e| e.to_string())?;
    let port = crate::net::free_sip_port();
    let rtp = 40_000 + (port % 1000) * 10;
    let (source, answer, extra, commands) = match behaviour {
        PhoneBehaviour::Answers(wav) => (
            format!("aufile,{}", wav.display()),
            "auto",
            String::new(),
            Vec::new(),
        ),
        PhoneBehaviour::Rings => ("null".to_string(), "manual", String::new(), Vec::new()),
        PhoneBehaviour::Busy { blackhole } => (
            "null".to_string(),
            "auto",
            "module\t\t\tmenu.so\ncall_max_calls\t\t1\n".to_string(),
            vec![format!("/dial sip:nobody@127.0.0.1:{blackhole}")],
        ),
    };
    std::fs::write(
        conf.join("config"),
        format!(
            "poll_method\t\tepoll\nsip_listen\t\t127.0.0.1:{port}\nnet_interface\t\t127.0.0.1\n\
             audio_player\t\talsa,null\naudio_source\t\t{source}\naudio_alert\t\talsa,null\n\
             ausrc_srate\t\t8000\nauplay_srate\t\t8000\nausrc_channels\t\t1\nauplay_channels\t\t1\n\
             rtp_ports\t\t{rtp}-{rtp_max}\nsnd_path\t\t{dumps}\n\
             module_path\t\t/usr/lib/baresip/modules\n\
             module\t\t\tg711.so\nmodule\t\t\taufile.so\nmodule\t\t\talsa.so\nmodule\t\t\tsndfile.so\n{extra}\
             module_app\t\taccount.so\n",
            rtp_max = rtp + 9,
            dumps = conf.join("dumps").display(),
        ),
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(
        conf.join("accounts"),
        format!(
            "<sip:{user}@{registrar}>;auth_pass={password};regint=60;answermode={answer};audio_codecs=PCMU\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    spawn_baresip(&bin, dir, name, &conf, secs, &commands)
}

/// dnsmasq as the only name server of the test zone `zone` on
/// 127.0.0.1:`port` (UDP and TCP): it answers from `records` (dnsmasq
/// options such as `--srv-host=...`, `--naptr-record=...`,
/// `--host-record=...`) with TTL `ttl_s`, NXDOMAIN for other names in the
/// zone, and asks no one else. Its log (every query) is `dir/dnsmasq-<port>.log`.
pub fn start_dnsmasq(
    dir: &Path,
    port: u16,
    zone: &str,
    ttl_s: u32,
    records: &[String],
) -> Result<ChildGuard, String> {
    let bin = DNSMASQ.path()?;
    let log = dir.join(format!("dnsmasq-{port}.log"));
    let child = Command::new(bin)
        .args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            "--pid-file=",
            "--log-queries",
        ])
        .arg(format!("--log-facility={}", log.display()))
        .arg(format!("--port={port}"))
        .arg(format!("--local=/{zone}/"))
        .arg(format!("--local-ttl={ttl_s}"))
        .args(records)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start dnsmasq: {e}"))?;
    let mut guard = ChildGuard(child);
    let t0 = Instant::now();
    while !crate::net::udp_port_bound(port) {
        if let Some(status) = guard.wait_exit(Duration::ZERO) {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(format!("dnsmasq exited {status}: {tail}"));
        }
        if t0.elapsed() > Duration::from_secs(5) {
            return Err(format!("dnsmasq did not bind 127.0.0.1:{port}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(guard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_names_its_package() {
        let e = Tool {
            name: "voxline-no-such-tool",
            package: "no-such-package",
        }
        .path()
        .unwrap_err();
        assert!(e.contains("apt-get install -y no-such-package"), "{e}");
    }

    #[test]
    fn a_guard_stops_its_child_on_drop_with_sigterm() {
        let child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        let mut guard = ChildGuard(child);
        assert_eq!(guard.pid(), pid);
        assert!(guard.wait_exit(Duration::from_millis(100)).is_none());
        guard.terminate(Duration::from_secs(5));
        let status = guard.wait_exit(Duration::ZERO).expect("exited");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGTERM));
        drop(guard); // already reaped: no signal sent again
    }
}
