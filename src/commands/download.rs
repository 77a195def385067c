//! `mnist-train download`: fetch and verify a dataset.

use crate::cli::DownloadArgs;
use crate::error::Result;

pub fn run(args: DownloadArgs) -> Result<()> {
    #[cfg(feature = "download")]
    {
        use crate::data::download::{DownloadOptions, download};
        let dest = crate::data::locate::download_dir(args.dataset, args.data_dir.as_deref())?;
        let options = DownloadOptions::standard(args.dataset, &args.mirrors.mirror);
        for (file, source) in download(args.dataset, &dest, &options)? {
            crate::outln!("{file}: {source}");
        }
        crate::outln!("{} is ready in {}", args.dataset, dest.display());
        Ok(())
    }
    #[cfg(not(feature = "download"))]
    {
        let _ = args;
        Err(crate::error::Error::Usage(
            "this binary was built without the `download` feature; fetch the four IDX files \
             yourself into --data-dir"
                .into(),
        ))
    }
}
