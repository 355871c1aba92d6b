//! Device selection: TRAINKERN_BACKEND, probing that never panics, and names. Alone in its
//! binary because it sets an environment variable.

use trainkern::{Backend, Device};

#[test]
fn selection_honours_the_override_and_never_panics() {
    for p in trainkern::backend::probe() {
        match &p.found {
            Ok(d) => eprintln!("{}: {d:?}", p.backend),
            Err(why) => eprintln!("{}: unavailable: {why}", p.backend),
        }
        if p.backend == Backend::Cpu {
            assert!(p.found.is_ok());
        }
    }
    // SAFETY (edition 2024 marks set_var unsafe): this binary has one test and no other thread
    // reads the environment meanwhile.
    unsafe { std::env::set_var("TRAINKERN_BACKEND", "cpu") };
    assert_eq!(Device::best().unwrap().backend(), Backend::Cpu);
    unsafe { std::env::set_var("TRAINKERN_BACKEND", "tpu") };
    let e = Device::best().unwrap_err();
    assert!(e.to_string().contains("tpu"), "{e}");
    unsafe { std::env::remove_var("TRAINKERN_BACKEND") };
    let best = Device::best().unwrap();
    eprintln!("best: {best}");
    // A software adapter is never picked unasked.
    #[cfg(feature = "wgpu")]
    if let Device::Wgpu(w) = &best {
        assert_ne!(w.adapter_info().device_type, wgpu::DeviceType::Cpu);
    }
    // CUDA answers with an error, not a panic, where there is no driver.
    match Device::cuda(0) {
        Ok(d) => eprintln!("cuda: {d}"),
        Err(e) => assert!(e.to_string().contains("cuda"), "{e}"),
    }
    assert!(Device::cuda(1 << 20).is_err());
    assert_eq!("CUDA".parse::<Backend>().unwrap(), Backend::Cuda);
}
