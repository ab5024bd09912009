using Mesh.Sidecar.Hosting;

return await SidecarHost.RunAsync(args).ConfigureAwait(false);
